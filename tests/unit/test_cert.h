/* test_cert.h: a throwaway self-signed TLS certificate for the tests that run a TLS server
 * (the fake KONE of test_worker_kone_client.c, kone-sim in kone_sim_fixture.h): P-256, valid
 * from an hour ago for a day, for 127.0.0.1 and localhost, its own CA so that the client
 * trusts it through kone.ca_file. Call it in a child process, so that OpenSSL state it leaves
 * behind is not counted against the code under test by ASan; failures exit the process
 * non-zero. Header-only (static): each test includes it once.
 */
#ifndef KD_TEST_CERT_H
#define KD_TEST_CERT_H

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <unistd.h>

__attribute__((unused)) static void tc_make_cert(const char *cert_path, const char *key_path,
                                                 const char *cn)
{
    EVP_PKEY *pk = EVP_EC_gen("P-256");
    if (!pk)
        _exit(2);
    X509 *x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_set_pubkey(x, pk);
    X509_NAME *n = X509_get_subject_name(x);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, n);
    X509V3_CTX v3;
    X509V3_set_ctx(&v3, x, x, NULL, NULL, 0);
    X509_EXTENSION *e =
        X509V3_EXT_conf_nid(NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    e = X509V3_EXT_conf_nid(NULL, &v3, NID_basic_constraints, "critical,CA:TRUE");
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
    if (X509_sign(x, pk, EVP_sha256()) <= 0)
        _exit(2);
    FILE *f = fopen(cert_path, "w");
    if (!f)
        _exit(2);
    PEM_write_X509(f, x);
    fclose(f);
    f = fopen(key_path, "w");
    if (!f)
        _exit(2);
    PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    X509_free(x);
    EVP_PKEY_free(pk);
}

#endif
