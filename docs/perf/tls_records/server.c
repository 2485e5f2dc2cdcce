/* docs/perf/tls_records: a TLS server that sends N 250-byte records to each client (issue 17, run.sh). */
#include <openssl/ssl.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
    int port = atoi(argv[1]);
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    SSL_CTX_use_certificate_chain_file(ctx, argv[2]);
    SSL_CTX_use_PrivateKey_file(ctx, argv[3], SSL_FILETYPE_PEM);
    if (argc > 4 && !strcmp(argv[4], "tls12")) SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
    int s = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port), .sin_addr.s_addr = htonl(0x7f000001)};
    if (bind(s, (void *)&a, sizeof a) || listen(s, 8)) { perror("bind"); return 1; }
    char msg[250]; memset(msg, 'x', sizeof msg); msg[0] = '{';
    for (;;) {
        int c = accept(s, NULL, NULL);
        SSL *ssl = SSL_new(ctx); SSL_set_fd(ssl, c);
        if (SSL_accept(ssl) != 1) { SSL_free(ssl); close(c); continue; }
        int n = 0; if (SSL_read(ssl, &n, sizeof n) != sizeof n) { SSL_free(ssl); close(c); continue; }
        for (int i = 0; i < n; i++) SSL_write(ssl, msg, sizeof msg);
        SSL_shutdown(ssl); SSL_free(ssl); close(c);
    }
}
