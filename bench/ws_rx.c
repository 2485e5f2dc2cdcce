/* ws_rx: the KONE thread's WebSocket receive per frame, alone (issue 17's micro-benchmark of
 * worker/kone_ws.c over wslay; not a baseline of scripts/bench, which does not run it).
 *
 * The worker's kd_ws is opened as kone_conn.c opens it, its upgrade answered (the accept key
 * of the request's own key), then --count jobs' frames are fed to kd_ws_rx as a TLS read hands
 * them over: the four text frames a call job receives (an answer, a call result, two call
 * states, as kone-sim writes them, unmasked as a server sends them) back to back, in reads of
 * at most 16 KiB. The message callback only counts. So
 *
 *   valgrind --tool=callgrind build/kd-bench-ws_rx --count 20000
 *
 * gives the instructions of kd_ws_rx (wslay's frame and message layers, the copy of each
 * message, and kone_ws.c's callbacks) per job: total / count, of which a few thousand are
 * the start-up; divide by 4 for a frame. Without valgrind it prints "ws_rx rate_per_s=..",
 * jobs per second on this machine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "kd_time.h"
#include "kone_ws.h"

static int64_t got, got_bytes;

static void on_msg(const char *msg, size_t len, void *user)
{
    (void)msg, (void)user;
    got++;
    got_bytes += (int64_t)len;
}

/* One server frame (FIN, text, unmasked) holding s, at p; its length on the wire. */
static size_t put_frame(unsigned char *p, const char *s)
{
    size_t n = strlen(s), h = 2;
    p[0] = 0x81;
    if (n < 126) {
        p[1] = (unsigned char)n;
    } else {
        p[1] = 126, p[2] = (unsigned char)(n >> 8), p[3] = (unsigned char)n;
        h = 4;
    }
    memcpy(p + h, s, n);
    return h + n;
}

int main(int argc, char **argv)
{
    kd_bench_opt opts[] = {
        {.name = "count", .min = 1, .max = 100000000, .value = 100000, .help = "jobs"},
    };
    kd_bench b;
    kd_bench_init(&b, "ws_rx", "[--count N]", argc, argv, opts, 1, NULL, 0);
    kd_ws w = {0};
    if (!kd_ws_open(&w, "kone.example", 443, "/stream-v2?accessToken=x", "koneapi", 1 << 20, on_msg,
                    NULL))
        return kd_bench_fail(&b, "kd_ws_open failed");
    char acc[29], ans[256];
    if (!kd_wshs_accept_of(w.hs->key, acc))
        return kd_bench_fail(&b, "no accept key");
    int n =
        snprintf(ans, sizeof ans,
                 "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: "
                 "Upgrade\r\nSec-WebSocket-Accept: %s\r\nSec-WebSocket-Protocol: koneapi\r\n\r\n",
                 acc);
    if (kd_ws_rx(&w, ans, (size_t)n) != KD_WS_OPENED)
        return kd_bench_fail(&b, "upgrade refused: %s", w.why);
    kd_ws_rx(&w, NULL, 0);
    /* one job's four frames, repeated to fill a 16 KiB read as a burst would */
    unsigned char job[2048];
    size_t job_len = 0;
    for (int f = 0; f < KD_BENCH_CALL_FRAMES; f++)
        job_len += put_frame(job + job_len, kd_bench_call_frames[f]);
    size_t per_read = 16384 / job_len;
    unsigned char *rd = malloc(per_read * job_len);
    if (!rd)
        return kd_bench_fail(&b, "out of memory");
    for (size_t i = 0; i < per_read; i++)
        memcpy(rd + i * job_len, job, job_len);
    int64_t t0 = kd_now_us();
    for (int64_t done = 0; done < opts[0].value;) {
        size_t k =
            (size_t)(opts[0].value - done) < per_read ? (size_t)(opts[0].value - done) : per_read;
        if (kd_ws_rx(&w, rd, k * job_len) != KD_WS_OK)
            return kd_bench_fail(&b, "stream ended: %s", w.why);
        done += (int64_t)k;
    }
    if (got != opts[0].value * 4)
        return kd_bench_fail(&b, "%lld messages of %lld", (long long)got,
                             (long long)opts[0].value * 4);
    kd_bench_note(&b, "%zu bytes a job on the wire, %lld bytes of messages", job_len,
                  (long long)got_bytes);
    kd_bench_report(&b, (uint64_t)opts[0].value, t0, kd_now_us());
    free(rd);
    kd_ws_free(&w);
    kd_bench_free(&b);
    return 0;
}
