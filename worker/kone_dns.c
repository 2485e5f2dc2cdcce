/* kone_dns.c: KONE's host name resolved on a thread of its own (see kone_dns.h for why).
 *
 * State machine under `mu`: `want` (the loop asked) wakes the thread, which resolves
 * without the lock, then stores either the address (fresh until `expires`) or the failure
 * (`failed`, reported once), bumps `gen` and calls notify, still under the lock so that
 * kd_kone_dns_stop, which sets `stopped` under it, is the last word: no notify after it.
 * Two references (loop, thread); the last one out frees.
 */
#include "kone_dns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "kd_log.h"
#include "kd_run.h"
#include "kd_str.h"

#define KD_DNS_ADDR_MAX 64 /* INET6_ADDRSTRLEN and then some */

struct kd_kone_dns {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int refs; /* under mu */
    char *host;
    int64_t ttl_us;
    kd_kone_dns_fn resolve;
    void (*notify)(void *);
    void *arg;
    /* under mu */
    bool want, busy, stopped;
    bool have;   /* addr is an answer (fresh until expires) */
    bool failed; /* the last resolution failed and nobody was told yet */
    int64_t expires;
    char addr[KD_DNS_ADDR_MAX];
    char why[160];
    atomic_uint_fast64_t gen;
};

static _Atomic(kd_kone_dns_fn) hook;

void kd_kone_dns_set_resolver(kd_kone_dns_fn fn)
{
    atomic_store(&hook, fn);
}

bool kd_kone_dns_is_numeric(const char *host)
{
    unsigned char buf[sizeof(struct in6_addr)];
    return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int kd_kone_dns_getaddrinfo(const char *host, char *addr, size_t len, char *why, size_t wlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc) {
        kd_str_copy(why, wlen, rc == EAI_SYSTEM ? kd_strerror(errno) : gai_strerror(rc));
        return -1;
    }
    /* the first answer, in the order getaddrinfo sorted them (RFC 6724, /etc/gai.conf) */
    rc = getnameinfo(res->ai_addr, res->ai_addrlen, addr, (socklen_t)len, NULL, 0, NI_NUMERICHOST);
    freeaddrinfo(res);
    if (rc) {
        kd_str_copy(why, wlen, gai_strerror(rc));
        return -1;
    }
    return 0;
}

static void unref(kd_kone_dns *d)
{
    pthread_mutex_lock(&d->mu);
    bool last = --d->refs == 0;
    pthread_mutex_unlock(&d->mu);
    if (!last)
        return;
    pthread_cond_destroy(&d->cv);
    pthread_mutex_destroy(&d->mu);
    free(d->host);
    free(d);
}

static void *resolver_thread(void *arg)
{
    pthread_setname_np(pthread_self(), "kone-dns"); /* top, perf and the bench tell threads apart */
    kd_kone_dns *d = arg;
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->want && !d->stopped)
            pthread_cond_wait(&d->cv, &d->mu);
        if (d->stopped)
            break;
        d->want = false;
        d->busy = true;
        pthread_mutex_unlock(&d->mu);

        char addr[KD_DNS_ADDR_MAX] = "", why[160] = "";
        int64_t t0 = kd_mono_us();
        int rc = d->resolve(d->host, addr, sizeof addr, why, sizeof why);
        int64_t took_ms = (kd_mono_us() - t0) / 1000;

        pthread_mutex_lock(&d->mu);
        d->busy = false;
        if (d->stopped)
            break;
        if (rc == 0) {
            d->have = true;
            d->failed = false;
            d->expires = kd_mono_us() + d->ttl_us;
            kd_str_copy(d->addr, sizeof d->addr, addr);
            kd_debug("kone: %s resolved to %s in %lld ms", d->host, addr, (long long)took_ms);
        } else {
            d->have = false;
            d->failed = true;
            kd_str_copy(d->why, sizeof d->why, why);
            /* the slot that asked logs it as its connection failure */
            kd_debug("kone: could not resolve %s: %s (after %lld ms)", d->host, why,
                     (long long)took_ms);
        }
        atomic_fetch_add(&d->gen, 1);
        d->notify(d->arg); /* under the lock: stop cannot have returned */
    }
    pthread_mutex_unlock(&d->mu);
    unref(d);
    return NULL;
}

int kd_kone_dns_start(kd_kone_dns **out, const char *host, int64_t ttl_us, void (*notify)(void *),
                      void *arg, kd_err *err)
{
    *out = NULL;
    kd_kone_dns *d = calloc(1, sizeof *d);
    if (!d || !(d->host = strdup(host))) {
        /* GCOVR_EXCL_START: allocation failure */
        free(d);
        return kd_err_set(err, KD_ERR_NOMEM, "out of memory");
        /* GCOVR_EXCL_STOP */
    }
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
    d->refs = 2;
    d->ttl_us = ttl_us;
    d->notify = notify;
    d->arg = arg;
    kd_kone_dns_fn h = atomic_load(&hook);
    d->resolve = h ? h : kd_kone_dns_getaddrinfo;
    atomic_init(&d->gen, 0);
    pthread_t t;
    int e = pthread_create(&t, NULL, resolver_thread, d);
    if (e) {
        /* GCOVR_EXCL_START: pthread_create fails only when resources are exhausted */
        pthread_cond_destroy(&d->cv);
        pthread_mutex_destroy(&d->mu);
        free(d->host);
        free(d);
        return kd_err_set(err, KD_ERR_INTERNAL, "kone: cannot start the resolver thread: %s",
                          kd_strerror(e));
        /* GCOVR_EXCL_STOP */
    }
    pthread_detach(t); /* stop never waits for a slow DNS server */
    *out = d;
    return 0;
}

kd_kone_dns_state kd_kone_dns_get(kd_kone_dns *d, char *addr, size_t len, char *why, size_t wlen)
{
    kd_kone_dns_state st;
    pthread_mutex_lock(&d->mu);
    if (d->have && kd_mono_us() < d->expires) {
        kd_str_copy(addr, len, d->addr);
        st = KD_DNS_READY;
    } else if (d->failed) {
        d->failed = false; /* told once: the next call asks again */
        snprintf(why, wlen, "could not resolve %s: %s", d->host, d->why);
        st = KD_DNS_FAILED;
    } else {
        if (!d->busy && !d->want) {
            d->want = true;
            pthread_cond_signal(&d->cv);
        }
        st = KD_DNS_PENDING;
    }
    pthread_mutex_unlock(&d->mu);
    return st;
}

uint64_t kd_kone_dns_gen(kd_kone_dns *d)
{
    return d ? atomic_load(&d->gen) : 0;
}

void kd_kone_dns_stop(kd_kone_dns *d)
{
    if (!d)
        return;
    pthread_mutex_lock(&d->mu);
    d->stopped = true;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
    unref(d);
}
