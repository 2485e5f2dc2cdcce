/* test_cert.h: throwaway TLS certificates for the tests that run a TLS server (the fake
 * KONE of test_worker_kone_client.c, kone-sim in kone_sim_fixture.h, the refusals of
 * test_worker_kone_tls_sim.c). P-256 keys, written as PEM files.
 *
 *   tc_make_cert  self-signed, valid from an hour ago for a day, for 127.0.0.1 and
 *                 localhost, its own CA so that the client trusts it through kone.ca_file
 *   tc_make_ca    a CA certificate and key (to sign tc_make_leaf's certificates)
 *   tc_make_leaf  a server certificate signed by such a CA, for the names in `san`
 *                 ("IP:127.0.0.1,DNS:localhost") and the validity window given in seconds
 *                 from now: enough to make a certificate for another host name, or one that
 *                 has expired, from a CA the client trusts
 *
 * Call them in a child process, so that OpenSSL state they leave behind is not counted
 * against the code under test by ASan; failures exit the process non-zero. Header-only
 * (static): each test includes it once.
 */
#ifndef KD_TEST_CERT_H
#define KD_TEST_CERT_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdbool.h>
#include <stdio.h>
#include <unistd.h>

static void tc_add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!e || !X509_add_ext(x, e, -1))
        _exit(2);
    X509_EXTENSION_free(e);
}

static void tc_write_pem(const char *path, X509 *x, EVP_PKEY *pk)
{
    FILE *f = fopen(path, "w");
    if (!f)
        _exit(2);
    if (x ? !PEM_write_X509(f, x) : !PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL))
        _exit(2);
    fclose(f);
}

/* One certificate: self-signed when issuer/issuer_key are NULL. san NULL: no SAN. */
static void tc_issue(const char *cert_path, const char *key_path, const char *cn, const char *san,
                     long from_s, long until_s, bool ca, X509 *issuer, EVP_PKEY *issuer_key)
{
    static long serial = 1;
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    X509 *x = X509_new();
    if (!pk || !x)
        _exit(2);
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial++ + (long)getpid() * 100);
    X509_gmtime_adj(X509_getm_notBefore(x), from_s);
    X509_gmtime_adj(X509_getm_notAfter(x), until_s);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : n);
    if (san)
        tc_add_ext(x, issuer ? issuer : x, NID_subject_alt_name, san);
    tc_add_ext(x, issuer ? issuer : x, NID_basic_constraints,
               ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (X509_sign(x, issuer_key ? issuer_key : pk, EVP_sha256()) <= 0)
        _exit(2);
    tc_write_pem(cert_path, x, NULL);
    tc_write_pem(key_path, NULL, pk);
    X509_free(x);
    EVP_PKEY_free(pk);
}

__attribute__((unused)) static void tc_make_cert(const char *cert_path, const char *key_path,
                                                 const char *cn)
{
    tc_issue(cert_path, key_path, cn, "IP:127.0.0.1,DNS:localhost", -3600, 86400, true, NULL, NULL);
}

__attribute__((unused)) static void tc_make_ca(const char *cert_path, const char *key_path,
                                               const char *cn)
{
    tc_issue(cert_path, key_path, cn, NULL, -3600, 86400, true, NULL, NULL);
}

__attribute__((unused)) static void tc_make_leaf(const char *ca_cert, const char *ca_key,
                                                 const char *cert_path, const char *key_path,
                                                 const char *cn, const char *san, long from_s,
                                                 long until_s)
{
    FILE *f = fopen(ca_cert, "r");
    X509 *issuer = f ? PEM_read_X509(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    f = fopen(ca_key, "r");
    EVP_PKEY *ik = f ? PEM_read_PrivateKey(f, NULL, NULL, NULL) : NULL;
    if (f)
        fclose(f);
    if (!issuer || !ik)
        _exit(2);
    tc_issue(cert_path, key_path, cn, san, from_s, until_s, false, issuer, ik);
    X509_free(issuer);
    EVP_PKEY_free(ik);
}

#endif
