/* sim_ws_client.h: a minimal stream-v2 client (libwebsockets) for tests that talk to the real
 * kone-sim frame by frame (test_sim_calls_sim.c, test_worker_kone_spec_sim.c): open a
 * connection with a token, queue text frames, service the socket until n frames came in.
 * The including file defines `sim` with `cert` (the CA file) and `port` before including
 * it, and includes cmocka, jansson and libwebsockets. Everything is static.
 */
#ifndef KD_TEST_SIM_WS_CLIENT_H
#define KD_TEST_SIM_WS_CLIENT_H

#include <time.h>

#define MAX_IN 8192

typedef struct wsc {
    struct lws_context *ctx;
    struct lws *wsi;
    bool up, closed;
    char **out; /* frames to send, in order */
    size_t n_out, i_out, cap_out;
    json_t *in[MAX_IN]; /* frames received */
    size_t n_in;
    char *rx;
    size_t rx_len;
} wsc;

static int ws_cb(struct lws *wsi, enum lws_callback_reasons reason, void *user, void *in,
                 size_t len)
{
    (void)user;
    wsc *w = lws_get_opaque_user_data(wsi);
    switch (reason) {
    case LWS_CALLBACK_CLIENT_ESTABLISHED:
        w->up = true;
        lws_callback_on_writable(wsi);
        break;
    case LWS_CALLBACK_CLIENT_RECEIVE: {
        char *np = realloc(w->rx, w->rx_len + len + 1);
        assert_non_null(np);
        memcpy(np + w->rx_len, in, len);
        w->rx = np;
        w->rx_len += len;
        if (lws_is_final_fragment(wsi)) {
            json_error_t je;
            json_t *o = json_loadb(w->rx, w->rx_len, 0, &je);
            assert_non_null(o);
            if (w->n_in < MAX_IN)
                w->in[w->n_in++] = o;
            else
                json_decref(o);
            w->rx_len = 0;
        }
        break;
    }
    case LWS_CALLBACK_CLIENT_WRITEABLE:
        if (w->i_out < w->n_out) {
            const char *t = w->out[w->i_out];
            size_t tl = strlen(t);
            unsigned char *b = malloc(LWS_PRE + tl);
            assert_non_null(b);
            memcpy(b + LWS_PRE, t, tl);
            int n = lws_write(wsi, b + LWS_PRE, tl, LWS_WRITE_TEXT);
            free(b);
            if (n < (int)tl)
                return -1;
            w->i_out++;
            if (w->i_out < w->n_out)
                lws_callback_on_writable(wsi);
        }
        break;
    case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
    case LWS_CALLBACK_CLIENT_CLOSED:
        w->closed = true;
        w->wsi = NULL;
        break;
    default: break;
    }
    return 0;
}

static const struct lws_protocols ws_protocols[] = {
    {"koneapi", ws_cb, 0, 65536, 0, NULL, 0},
    {NULL, NULL, 0, 0, 0, NULL, 0},
};

static void ws_queue(wsc *w, const char *text)
{
    if (w->n_out == w->cap_out) {
        w->cap_out = w->cap_out ? w->cap_out * 2 : 64;
        w->out = realloc(w->out, w->cap_out * sizeof *w->out);
        assert_non_null(w->out);
    }
    w->out[w->n_out++] = strdup(text);
    if (w->wsi && w->up)
        lws_callback_on_writable(w->wsi);
}

/* Services the connection until n frames were received (or ms pass). */
static bool ws_wait(wsc *w, size_t n, int ms)
{
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (w->n_in < n && !w->closed) {
        lws_service(w->ctx, 0);
        clock_gettime(CLOCK_MONOTONIC, &t);
        if ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 > ms)
            break;
    }
    return w->n_in >= n;
}

static void ws_open(wsc *w, const char *token)
{
    memset(w, 0, sizeof *w);
    lws_set_log_level(LLL_ERR, NULL);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = ws_protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = sim.cert;
    w->ctx = lws_create_context(&info);
    assert_non_null(w->ctx);
    char path[200];
    snprintf(path, sizeof path, "/stream-v2?accessToken=%s", token);
    struct lws_client_connect_info ci;
    memset(&ci, 0, sizeof ci);
    ci.context = w->ctx;
    ci.address = "127.0.0.1";
    ci.port = sim.port;
    ci.path = path;
    ci.host = "127.0.0.1";
    ci.origin = "127.0.0.1";
    ci.protocol = "koneapi";
    ci.ssl_connection = LCCSCF_USE_SSL;
    ci.opaque_user_data = w;
    ci.pwsi = &w->wsi;
    assert_non_null(lws_client_connect_via_info(&ci));
    struct timespec t0, t;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (!w->up && !w->closed) {
        lws_service(w->ctx, 0);
        clock_gettime(CLOCK_MONOTONIC, &t);
        assert_true(t.tv_sec - t0.tv_sec < 10);
    }
    assert_true(w->up);
}

static void ws_close(wsc *w)
{
    lws_context_destroy(w->ctx);
    for (size_t i = 0; i < w->n_out; i++)
        free(w->out[i]);
    free(w->out);
    for (size_t i = 0; i < w->n_in; i++)
        json_decref(w->in[i]);
    free(w->rx);
}

#endif
