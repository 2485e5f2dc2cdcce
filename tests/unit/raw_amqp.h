/* raw_amqp.h: a plain rabbitmq-c connection for the live broker tests (KD_TEST_AMQP=1), for
 * what kd_amqp deliberately cannot do (delete a queue, declare one as an older version did).
 *
 * The dev stack's RabbitMQ speaks TLS only (amqp.tls, amqp.ca_file from its env file), so this
 * connects the way kd_amqp does. rabbitmq-c 0.11 matches the certificate's DNS names only, not
 * its IP addresses, so 127.0.0.1 is reached under the name the dev certificate carries,
 * localhost (tests/integration/lib.sh does the same for amqp-tools). Header-only: each test
 * program includes it once. */
#ifndef KD_TEST_RAW_AMQP_H
#define KD_TEST_RAW_AMQP_H

#include <amqp.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <stdlib.h>
#include <string.h>

#include "kd_config.h"

/* Opens and logs in; returns the connection, or NULL (closed) when either fails. */
static inline amqp_connection_state_t raw_amqp_login(const kd_config *cfg)
{
    amqp_connection_state_t c = amqp_new_connection();
    bool tls = strcmp(kd_cfg_str(cfg, KD_CFG_AMQP_TLS), "true") == 0;
    amqp_socket_t *s = tls ? amqp_ssl_socket_new(c) : amqp_tcp_socket_new(c);
    const char *host = kd_cfg_str(cfg, KD_CFG_AMQP_HOST);
    if (tls && strcmp(host, "127.0.0.1") == 0)
        host = "localhost";
    const char *ca = kd_cfg_str(cfg, KD_CFG_AMQP_CA_FILE);
    bool ok =
        s && (!tls || !*ca || amqp_ssl_socket_set_cacert(s, ca) == 0) &&
        amqp_socket_open(s, host, atoi(kd_cfg_str(cfg, KD_CFG_AMQP_PORT))) == 0 &&
        amqp_login(c, kd_cfg_str(cfg, KD_CFG_AMQP_VHOST), 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
                   kd_cfg_str(cfg, KD_CFG_AMQP_USER), kd_cfg_str(cfg, KD_CFG_AMQP_PASSWORD))
                .reply_type == AMQP_RESPONSE_NORMAL;
    if (!ok) {
        amqp_destroy_connection(c);
        return NULL;
    }
    return c;
}

#endif
