/* amqp_tls.c: the TLS side of kd_amqp (AMQPS through rabbitmq-c's OpenSSL socket).
 *
 * Why it is built this way:
 * - Verification is on unless amqp.tls_insecure says otherwise, and that key is named so
 *   that nobody sets it by accident; kd_amqp_connect warns about it (and about plain AMQP)
 *   at every start.
 * - rabbitmq-c reports a refused certificate as one status ("peer verify failed") and frees
 *   the TLS session before returning, so the reason (unknown CA, expired, ...) would be
 *   lost. A verify callback on the socket's SSL_CTX keeps OpenSSL's first verification error
 *   in a thread-local (one connection is opened by one thread at a time), and the error
 *   message names it.
 * - The host name is checked by OpenSSL during verification (X509_VERIFY_PARAM on the
 *   socket's SSL_CTX), not by rabbitmq-c's own check: that one (0.11) knows DNS names only,
 *   so a certificate issued for an IP address would be refused. A mismatch then shows up as
 *   a verification error like any other, with its reason.
 * - rabbitmq-c does not load the system CAs by itself: with no amqp.ca_file they are loaded
 *   here, so a public CA works like it does for libcurl and librdkafka.
 * - The files are checked at start (kd_tls_check_files) with errors naming them; here
 *   rabbitmq-c's own failure to load one is only reported by key.
 */
#include "amqp_int.h"

#include <amqp_ssl_socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <arpa/inet.h>
#include <stdio.h>

#include "kd_tls.h"

static _Thread_local int kd_amqp_tls_verr; /* first X509_V_ERR_* of the current handshake */

static int on_verify(int ok, X509_STORE_CTX *ctx)
{
    if (!ok && !kd_amqp_tls_verr)
        kd_amqp_tls_verr = X509_STORE_CTX_get_error(ctx);
    return ok;
}

amqp_socket_t *kd_amqp_tls_socket_new(kd_amqp *a, const kd_config *cfg, const char *host,
                                      kd_err *err)
{
    amqp_socket_t *sock = amqp_ssl_socket_new(a->conn);
    if (!sock) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        kd_err_set(err, KD_ERR_NOMEM, "amqp %s: cannot create a TLS socket", a->where);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    const char *ca = kd_cfg_str(cfg, KD_CFG_AMQP_CA_FILE);
    const char *cert = kd_cfg_str(cfg, KD_CFG_AMQP_CERT_FILE);
    const char *key = kd_cfg_str(cfg, KD_CFG_AMQP_KEY_FILE);
    bool insecure = kd_cfg_bool(cfg, KD_CFG_AMQP_TLS_INSECURE);
    SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
    int st =
        *ca ? amqp_ssl_socket_set_cacert(sock, ca)
            : (SSL_CTX_set_default_verify_paths(ctx) == 1 ? AMQP_STATUS_OK : AMQP_STATUS_SSL_ERROR);
    if (st) {
        /* GCOVR_EXCL_START: kd_tls_check_files loaded this CA bundle first, as OpenSSL does here */
        ERR_clear_error();
        kd_err_set(err, KD_ERR_INVALID, "amqp.ca_file: cannot load %s", *ca ? ca : "system CAs");
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    if (*cert && amqp_ssl_socket_set_key(sock, cert, key)) {
        /* GCOVR_EXCL_START: kd_tls_check_files loaded and matched this certificate and key first */
        ERR_clear_error();
        kd_err_set(err, KD_ERR_INVALID, "amqp.cert_file/amqp.key_file: cannot load %s / %s", cert,
                   key);
        return NULL;
        /* GCOVR_EXCL_STOP */
    }
    amqp_ssl_socket_set_ssl_versions(sock, AMQP_TLSv1_2, AMQP_TLSvLATEST);
    amqp_ssl_socket_set_verify_peer(sock, !insecure);
    amqp_ssl_socket_set_verify_hostname(sock, 0); /* OpenSSL checks it, below */
    if (!insecure) {
        X509_VERIFY_PARAM *param = SSL_CTX_get0_param(ctx);
        unsigned char ip[16];
        bool is_ip = inet_pton(AF_INET, host, ip) == 1 || inet_pton(AF_INET6, host, ip) == 1;
        X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        if ((is_ip ? X509_VERIFY_PARAM_set1_ip_asc(param, host)
                   : X509_VERIFY_PARAM_set1_host(param, host, 0)) != 1) {
            /* GCOVR_EXCL_START: OpenSSL refuses a parsed name or address only when out of memory */
            ERR_clear_error();
            kd_err_set(err, KD_ERR_INVALID, "amqp.host: '%s' is not a host name", host);
            return NULL;
            /* GCOVR_EXCL_STOP */
        }
    }
    SSL_CTX_set_verify(ctx, SSL_CTX_get_verify_mode(ctx), on_verify);
    kd_amqp_tls_verr = 0;
    return sock;
}

int kd_amqp_tls_open_error(kd_amqp *a, int status, kd_err *err)
{
    int verr = kd_amqp_tls_verr;
    unsigned long e = ERR_peek_last_error();
    char lib[256] = "";
    if (e)
        ERR_error_string_n(e, lib, sizeof lib);
    ERR_clear_error();
    switch (status) {
    case AMQP_STATUS_SSL_PEER_VERIFY_FAILED: {
        bool name = verr == X509_V_ERR_HOSTNAME_MISMATCH || verr == X509_V_ERR_IP_ADDRESS_MISMATCH;
        return kd_err_set(err, KD_ERR_IO,
                          "amqp %s: TLS: the broker's certificate was refused: %s%s", a->where,
                          verr ? X509_verify_cert_error_string(verr) : "no certificate",
                          name ? " (its certificate does not name this host: use a name it "
                                 "carries in amqp.host)"
                               : " (check amqp.ca_file)");
    }
    case AMQP_STATUS_SSL_CONNECTION_FAILED:
        return kd_err_set(err, KD_ERR_IO,
                          "amqp %s: TLS handshake failed%s%s (is this RabbitMQ's TLS port?)",
                          a->where, lib[0] ? ": " : "", lib);
    }
    return 0; /* not a TLS failure: the caller describes it */
}
