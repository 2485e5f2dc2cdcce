/* docs/perf/tls_records: the OpenSSL client, reading as the worker's kone_tls.c does (a buffering BIO). */
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
int main(int argc, char **argv) {
    int port = atoi(argv[1]), n = atoi(argv[3]);
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, argv[2], NULL);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    connect(s, (void *)&a, sizeof a);
    SSL *ssl = SSL_new(ctx);
    BIO *sock = BIO_new_socket(s, BIO_NOCLOSE), *buf = BIO_new(BIO_f_buffer());
    BIO_set_read_buffer_size(buf, 32768); BIO_up_ref(sock); BIO_push(buf, sock); SSL_set_bio(ssl, buf, sock);
    SSL_set1_host(ssl, "localhost");
    if (SSL_connect(ssl) != 1) { fprintf(stderr, "handshake failed\n"); return 1; }
    SSL_write(ssl, &n, sizeof n);
    fcntl(s, F_SETFL, O_NONBLOCK);
    static char rb[65536]; long want = (long)n * 250, got = 0;
    while (got < want) {
        struct pollfd p = {s, POLLIN, 0}; poll(&p, 1, 1000);
        do {
            int r = SSL_read(ssl, rb, sizeof rb);
            if (r <= 0) break;
            got += r;
        } while (SSL_has_pending(ssl) || BIO_ctrl_pending(buf) > 0);
    }
    printf("%ld\n", got);
    return 0;
}
