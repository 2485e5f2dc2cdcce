/**
 * @file kd_tls.h
 * @brief kd_tls: the certificate files of a TLS client, checked before anything connects.
 *
 * rabbitmq-c and librdkafka only say "SSL error" when a file is wrong, and only once they
 * connect, which a worker retries forever. So every program checks its CA bundle, client
 * certificate and key at start, and a bad file is a config error (exit 2) whose one line
 * names the key and the file: a missing or unreadable file, a CA bundle without a
 * certificate, a certificate file without one, a key that is not an unencrypted PEM key,
 * a key that does not match its certificate, or one of certificate and key without the other.
 */
#ifndef KD_TLS_H
#define KD_TLS_H

#include "kd_config.h"
#include "kd_err.h"

/** Checks the CA, certificate and key files named by keys ca, cert and key (each may be
 * empty: not used), e.g. KD_CFG_AMQP_CA_FILE, KD_CFG_AMQP_CERT_FILE, KD_CFG_AMQP_KEY_FILE. */
int kd_tls_check_files(const kd_config *cfg, kd_config_id ca, kd_config_id cert, kd_config_id key,
                       kd_err *err);

/** The same on explicit paths; keys name them in errors ("amqp.ca_file", ...). */
int kd_tls_check_paths(const char *ca_key, const char *ca, const char *cert_key, const char *cert,
                       const char *key_key, const char *key, kd_err *err);

#endif
