/* docs/perf/tls_records: the GnuTLS client, reading through a buffered pull function. */
#include <gnutls/gnutls.h>
#include <arpa/inet.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
static char ib[32768]; static size_t ioff, ilen; static int fd;
static ssize_t pull(gnutls_transport_ptr_t p, void *d, size_t n) {
    (void)p;
    if (ilen == 0) {
        ssize_t r = recv(fd, ib, sizeof ib, 0);
        if (r <= 0) return r;
        ioff = 0; ilen = (size_t)r;
    }
    if (n > ilen) n = ilen;
    memcpy(d, ib + ioff, n); ioff += n; ilen -= n; return (ssize_t)n;
}
static ssize_t push(gnutls_transport_ptr_t p, const void *d, size_t n) { (void)p; return send(fd, d, n, 0); }
int main(int argc, char **argv) {
    int port = atoi(argv[1]), n = atoi(argv[3]);
    gnutls_certificate_credentials_t cred; gnutls_certificate_allocate_credentials(&cred);
    gnutls_certificate_set_x509_trust_file(cred, argv[2], GNUTLS_X509_FMT_PEM);
    gnutls_session_t s; gnutls_init(&s, GNUTLS_CLIENT);
    gnutls_set_default_priority(s);
    gnutls_credentials_set(s, GNUTLS_CRD_CERTIFICATE, cred);
    gnutls_session_set_verify_cert(s, "localhost", 0);
    fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    connect(fd, (void *)&a, sizeof a);
    gnutls_transport_set_pull_function(s, pull); gnutls_transport_set_push_function(s, push);
    int r; do r = gnutls_handshake(s); while (r < 0 && !gnutls_error_is_fatal(r));
    if (r < 0) { fprintf(stderr, "handshake: %s\n", gnutls_strerror(r)); return 1; }
    gnutls_record_send(s, &n, sizeof n);
    fcntl(fd, F_SETFL, O_NONBLOCK);
    static char rb[65536]; long want = (long)n * 250, got = 0;
    while (got < want) {
        struct pollfd p = {fd, POLLIN, 0}; if (!ilen) poll(&p, 1, 1000);
        do {
            ssize_t k = gnutls_record_recv(s, rb, sizeof rb);
            if (k <= 0) break;
            got += k;
        } while (gnutls_record_check_pending(s) || ilen);
    }
    printf("%ld\n", got);
    return 0;
}
