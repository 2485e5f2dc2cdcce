/* tls.c: see kd_tls.h. Loads each file with OpenSSL the way the TLS libraries will, so that
 * what passes here is what they accept, and says which file is wrong and why.
 *
 * Why an encrypted key is refused: neither rabbitmq-c nor our librdkafka settings take a
 * key password (rabbitmq-c aborts the process when OpenSSL asks for one), so the key must be
 * stored unencrypted and protected by file permissions (a Kubernetes Secret mounted 0400).
 * The password callback here returns nothing, so OpenSSL never prompts on a terminal.
 */
#include "kd_tls.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

// NOLINTNEXTLINE(readability-non-const-parameter): OpenSSL's pem_password_cb type
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return 0;
}

/* Opens path for reading as a BIO, or explains why it cannot. */
static BIO *open_file(const char *key, const char *path, kd_err *err)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        kd_err_set(err, KD_ERR_INVALID, "%s: cannot read %s: %s", key, path, kd_strerror(errno));
        return NULL;
    }
    BIO *b = BIO_new_fp(f, BIO_CLOSE);
    if (!b) {
        /* GCOVR_EXCL_START: allocation failure (no test injects one) */
        fclose(f);
        kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    return b;
}

/* A CA bundle: at least one certificate, and nothing OpenSSL cannot parse. */
static int check_ca(const char *key, const char *path, kd_err *err)
{
    BIO *b = open_file(key, path, err);
    if (!b)
        return err ? err->code : KD_ERR_INVALID;
    STACK_OF(X509_INFO) *infos = PEM_X509_INFO_read_bio(b, NULL, no_password, NULL);
    BIO_free(b);
    int n = 0;
    for (int i = 0; infos && i < sk_X509_INFO_num(infos); i++)
        n += sk_X509_INFO_value(infos, i)->x509 != NULL;
    sk_X509_INFO_pop_free(infos, X509_INFO_free);
    ERR_clear_error();
    if (n == 0)
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s: %s holds no PEM certificate (a CA bundle needs at least one)", key,
                          path);
    return 0;
}

/* A client certificate (private_key false) or its key: one PEM object read from the file.
 * Returns the X509 or EVP_PKEY, or NULL with err set. A key must be unencrypted: the worker
 * starts unattended, with no one to type a passphrase. */
static void *load_pem(const char *key, const char *path, bool private_key, kd_err *err)
{
    BIO *b = open_file(key, path, err);
    if (!b)
        return NULL;
    void *obj = private_key ? (void *)PEM_read_bio_PrivateKey(b, NULL, no_password, NULL)
                            : (void *)PEM_read_bio_X509(b, NULL, no_password, NULL);
    BIO_free(b);
    ERR_clear_error();
    if (!obj)
        kd_err_set(err, KD_ERR_INVALID, "%s: %s holds no %s", key, path,
                   private_key ? "unencrypted PEM private key" : "PEM certificate");
    return obj;
}

int kd_tls_check_paths(const char *ca_key, const char *ca, const char *cert_key, const char *cert,
                       const char *key_key, const char *key, kd_err *err)
{
    int rc = 0;
    if (ca && *ca && (rc = check_ca(ca_key, ca, err)))
        return rc;
    bool have_cert = cert && *cert, have_key = key && *key;
    if (have_cert != have_key)
        return kd_err_set(err, KD_ERR_INVALID,
                          "%s and %s: set both (a client certificate "
                          "and its key) or neither",
                          cert_key, key_key);
    if (!have_cert)
        return 0;
    X509 *x = load_pem(cert_key, cert, false, err);
    EVP_PKEY *k = x ? load_pem(key_key, key, true, err) : NULL;
    if (!x || !k)
        rc = err ? err->code : KD_ERR_INVALID;
    else if (X509_check_private_key(x, k) != 1)
        rc = kd_err_set(err, KD_ERR_INVALID,
                        "%s: the key in %s does not match the certificate "
                        "in %s (%s)",
                        key_key, key, cert, cert_key);
    ERR_clear_error();
    X509_free(x);
    EVP_PKEY_free(k);
    return rc;
}

int kd_tls_check_files(const kd_config *cfg, kd_config_id ca, kd_config_id cert, kd_config_id key,
                       kd_err *err)
{
    return kd_tls_check_paths(kd_cfg_name(ca), kd_cfg_str(cfg, ca), kd_cfg_name(cert),
                              kd_cfg_str(cfg, cert), kd_cfg_name(key), kd_cfg_str(cfg, key), err);
}
