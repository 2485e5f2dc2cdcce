/* kafka_security.c: how every Kafka client of the project (the worker's producer, kone-events'
 * consumer) reaches the brokers: TLS (ssl), TLS plus a SCRAM login (sasl_ssl), or, when an
 * operator says so, plaintext. See docs/security.md, Transport security.
 *
 * Why it is built this way:
 * - librdkafka's own properties do the work (security.protocol, ssl.*, sasl.*); this file
 *   only maps the project's keys onto them, in one place for producer and consumer.
 * - Verification cannot be turned off: enable.ssl.certificate.verification and
 *   ssl.endpoint.identification.algorithm=https are set explicitly rather than trusted to
 *   librdkafka's defaults (which changed across versions). plaintext logs a warning at every
 *   start.
 * - The files are checked first (kd_tls_check_files), because librdkafka reports a bad one
 *   only as "ssl.key.location failed" or, worse, at the first connect.
 * - librdkafka reports a refused broker certificate as "certificate verify failed" whatever
 *   the reason; a certificate verify callback keeps OpenSSL's decision (accepts exactly what
 *   OpenSSL accepted) and puts the reason (unknown CA, expired, hostname mismatch) into the
 *   error librdkafka reports.
 * - The SASL password comes from kafka.sasl_password (secret: its _FILE variant in
 *   production). librdkafka marks sasl.password sensitive and redacts it from its own
 *   dumps; errors here name properties, never values.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include "kd_kafka.h"
#include "kd_log.h"
#include "kd_tls.h"

int kd_kafka_conf_set(rd_kafka_conf_t *conf, const char *name, const char *value, kd_err *err)
{
    char why[512];
    if (rd_kafka_conf_set(conf, name, value, why, sizeof why) == RD_KAFKA_CONF_OK)
        return 0;
    /* `why` quotes the value: name the property only */
    return kd_err_set(err, KD_ERR_INVALID, "kafka: librdkafka refused property %s", name);
}

/* Keeps OpenSSL's verdict on each certificate of the chain; names the reason of a refusal. */
static int on_cert_verify(
    rd_kafka_t *rk, const char *broker_name, int32_t broker_id,
    // NOLINTNEXTLINE(readability-non-const-parameter): librdkafka's ssl.certificate.verify_cb type
    int *x509_error, int depth, const char *buf, size_t size, char *errstr, size_t errstr_size,
    void *opaque)
{
    (void)rk, (void)broker_id, (void)buf, (void)size, (void)opaque;
    if (*x509_error == X509_V_OK)
        return 1;
    snprintf(errstr, errstr_size, "%s: the broker's certificate (chain depth %d) was refused: %s%s",
             broker_name, depth, X509_verify_cert_error_string(*x509_error),
             *x509_error == X509_V_ERR_HOSTNAME_MISMATCH ||
                     *x509_error == X509_V_ERR_IP_ADDRESS_MISMATCH
                 ? " (its certificate does not name this host: use a name it carries in "
                   "kafka.brokers)"
                 : " (check kafka.ca_file)");
    return 0;
}

static atomic_bool kd_kafka_warned; /* the plaintext warning: once per process */

int kd_kafka_conf_security(rd_kafka_conf_t *conf, const kd_config *cfg, kd_err *err)
{
    const char *proto =
        kd_cfg_str(cfg, KD_CFG_KAFKA_SECURITY_PROTOCOL); /* ssl|sasl_ssl|plaintext */
    bool plain = strcmp(proto, "plaintext") == 0, sasl = strcmp(proto, "sasl_ssl") == 0;
    int rc = kd_kafka_conf_set(conf, "security.protocol", proto, err);
    if (rc)
        return rc;
    if (plain) {
        if (!atomic_exchange(&kd_kafka_warned, true))
            kd_warn("kafka: INSECURE: kafka.security_protocol=plaintext: results, events and "
                    "their media and card ids cross the network in clear, and anyone who "
                    "reaches the brokers can read and forge them");
        return 0;
    }
    if ((rc = kd_tls_check_files(cfg, KD_CFG_KAFKA_CA_FILE, KD_CFG_KAFKA_CERT_FILE,
                                 KD_CFG_KAFKA_KEY_FILE, err)))
        return rc;
    const char *ca = kd_cfg_str(cfg, KD_CFG_KAFKA_CA_FILE);
    const char *cert = kd_cfg_str(cfg, KD_CFG_KAFKA_CERT_FILE);
    const char *key = kd_cfg_str(cfg, KD_CFG_KAFKA_KEY_FILE);
    const char *props[][2] = {
        {"enable.ssl.certificate.verification", "true"},
        {"ssl.endpoint.identification.algorithm", "https"},
        {"ssl.ca.location", *ca ? ca : NULL},
        {"ssl.certificate.location", *cert ? cert : NULL},
        {"ssl.key.location", *key ? key : NULL},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
        if (props[i][1] && (rc = kd_kafka_conf_set(conf, props[i][0], props[i][1], err)))
            return rc;
    if (rd_kafka_conf_set_ssl_cert_verify_cb(conf, on_cert_verify) != RD_KAFKA_CONF_OK)
        /* GCOVR_EXCL_START: the librdkafka of every build has TLS (OpenSSL) */
        return kd_err_set(err, KD_ERR_INVALID, "kafka: librdkafka was built without TLS");
    /* GCOVR_EXCL_STOP */
    if (!sasl)
        return 0;
    const char *mech = kd_cfg_str(cfg, KD_CFG_KAFKA_SASL_MECHANISM);
    const char *user = kd_cfg_str(cfg, KD_CFG_KAFKA_SASL_USER);
    const char *pw = kd_cfg_str(cfg, KD_CFG_KAFKA_SASL_PASSWORD);
    if (!*user || !*pw)
        return kd_err_set(err, KD_ERR_INVALID,
                          "kafka.sasl_user and kafka.sasl_password (or "
                          "KD_KAFKA_SASL_PASSWORD_FILE): both needed with sasl_ssl");
    if ((rc = kd_kafka_conf_set(conf, "sasl.mechanisms", mech, err)) ||
        (rc = kd_kafka_conf_set(conf, "sasl.username", user, err)))
        return rc;
    return kd_kafka_conf_set(conf, "sasl.password", pw, err);
}
