/* kone_dns: KONE's host name resolved off the KONE loop, on a small thread of its own.
 *
 * Why: libwebsockets 4.1 as Debian builds it has no asynchronous DNS
 * (LWS_WITH_SYS_ASYNC_DNS is off) and resolves a connection's address with a blocking
 * getaddrinfo on its service loop, so a slow DNS server stalled every connection, answer and
 * timer of the worker. Here the loop only asks (kd_kone_dns_get never blocks); the resolver
 * thread runs getaddrinfo and wakes the loop (notify) when the answer is in. The loop then
 * connects to the numeric address while TLS (SNI and the certificate's name check) and the
 * Host header still use the name from kone.ws_url (kone_conn.c).
 *
 * The answer is kept kone.dns_ttl_s (0: every connection resolves again); getaddrinfo tells
 * no TTL. An expired address is not used while its renewal runs: the connection waits for
 * it. A failed resolution is reported once to the next caller, who treats it as a transient
 * connection failure (the slot's reconnect backoff); the next call asks again.
 *
 * Stop never waits for a resolution under way: the thread holds a reference and frees the
 * state when it is done; notify is called under the lock and never after stop returned.
 */
#ifndef KD_WORKER_KONE_DNS_H
#define KD_WORKER_KONE_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kd_err.h"

typedef struct kd_kone_dns kd_kone_dns;

typedef enum {
    KD_DNS_READY = 0, /* addr holds a fresh numeric address */
    KD_DNS_PENDING,   /* a resolution is under way: notify is called when it ends */
    KD_DNS_FAILED,    /* the last resolution failed: why says how (reported once) */
} kd_kone_dns_state;

/* A blocking resolution: host to one numeric address (text) in addr; 0, or -1 with why.
 * kd_kone_dns_getaddrinfo is the real one. */
typedef int (*kd_kone_dns_fn)(const char *host, char *addr, size_t len, char *why, size_t wlen);
int kd_kone_dns_getaddrinfo(const char *host, char *addr, size_t len, char *why, size_t wlen);

/* Test hook: the resolution every resolver thread started afterwards runs (NULL: the real
 * one). Set it before kd_kone_start; production code never does. */
void kd_kone_dns_set_resolver(kd_kone_dns_fn fn);

/* True when host is already a numeric IPv4 or IPv6 address (nothing to resolve). */
bool kd_kone_dns_is_numeric(const char *host);

/* Starts the resolver thread for host. notify(arg) is called from that thread each time a
 * resolution ends (it must be quick: lws_cancel_service). */
int kd_kone_dns_start(kd_kone_dns **out, const char *host, int64_t ttl_us, void (*notify)(void *),
                      void *arg, kd_err *err);
/* Loop side, never blocks: READY with the address, PENDING (asked; wait for notify), or
 * FAILED with the reason. */
kd_kone_dns_state kd_kone_dns_get(kd_kone_dns *d, char *addr, size_t len, char *why, size_t wlen);
/* Resolutions finished so far (the loop compares it to the last it saw, as for tokens). */
uint64_t kd_kone_dns_gen(kd_kone_dns *d);
/* No notify after it returns; a resolution under way is left to finish on its own. */
void kd_kone_dns_stop(kd_kone_dns *d);

#endif
