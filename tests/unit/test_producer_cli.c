/* test_producer_cli: kone-producer's pure modules (no broker): the confirm window,
 * the report lines, the line reader, and the setup's error lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "input.h"
#include "replay.h"
#include "report.h"
#include "start.h"
#include "window.h"

/* ---- window ---- */

/* Pushes n entries for lines 1..n with job ids "j<line>", sent with tags 1..n. */
static void push_sent(kd_pw *w, int n)
{
    for (int i = 1; i <= n; i++) {
        kd_pw_entry *e = kd_pw_push(w, i);
        assert_non_null(e);
        snprintf(e->job_id, sizeof e->job_id, "j%d", i);
        assert_int_equal(kd_pw_set_body(e, "body", 4), 0);
        kd_pw_sent(e, (uint64_t)i, 1000);
    }
}

static void test_window_single_and_multiple_acks(void **state)
{
    (void)state;
    kd_pw w;
    assert_int_equal(kd_pw_init(&w, 8, "exchange 'x' with routing key 'k'"), 0);
    push_sent(&w, 5);
    assert_int_equal(w.pending, 5);
    assert_null(kd_pw_done(&w));

    /* out of order: tag 2 first; the head (tag 1) still holds the report back */
    assert_int_equal(kd_pw_ack(&w, 2, false), 1);
    assert_null(kd_pw_done(&w));
    /* multiple=true up to 4 settles 1, 3 and 4 (2 is done already) */
    assert_int_equal(kd_pw_ack(&w, 4, true), 3);
    assert_int_equal(w.pending, 1);
    for (long line = 1; line <= 4; line++) {
        const kd_pw_entry *e = kd_pw_done(&w);
        assert_non_null(e);
        assert_int_equal(e->line, line);
        assert_int_equal(e->state, KD_PW_CONFIRMED);
        assert_null(e->body);
        kd_pw_pop(&w);
    }
    assert_null(kd_pw_done(&w));
    /* a duplicate or late ack changes nothing */
    assert_int_equal(kd_pw_ack(&w, 3, false), 0);
    assert_int_equal(kd_pw_ack(&w, 5, false), 1);
    assert_int_equal(kd_pw_done(&w)->line, 5);
    kd_pw_pop(&w);
    assert_int_equal(w.count, 0);
    assert_int_equal(w.pending, 0);
    kd_pw_free(&w);
}

static void test_window_nack_and_return(void **state)
{
    (void)state;
    kd_pw w;
    assert_int_equal(kd_pw_init(&w, 8, "exchange 'x' with routing key 'k'"), 0);
    push_sent(&w, 3);
    /* basic.return names the message by id; the ack that follows means unroutable */
    assert_true(kd_pw_returned(&w, "j2", 312, "NO_ROUTE"));
    assert_false(kd_pw_returned(&w, "nope", 312, "NO_ROUTE"));
    assert_int_equal(kd_pw_ack(&w, 2, true), 2);
    assert_int_equal(kd_pw_nack(&w, 3, false), 1);

    const kd_pw_entry *e = kd_pw_done(&w);
    assert_int_equal(e->state, KD_PW_CONFIRMED);
    kd_pw_pop(&w);
    e = kd_pw_done(&w);
    assert_int_equal(e->state, KD_PW_REFUSED);
    assert_non_null(strstr(e->error, "unroutable"));
    assert_non_null(strstr(e->error, "exchange 'x' with routing key 'k'"));
    assert_non_null(strstr(e->error, "312 NO_ROUTE"));
    kd_pw_pop(&w);
    e = kd_pw_done(&w);
    assert_int_equal(e->state, KD_PW_REFUSED);
    assert_non_null(strstr(e->error, "nacked"));
    kd_pw_pop(&w);
    kd_pw_free(&w);
}

static void test_window_duplicate_ids_return_matches_oldest(void **state)
{
    (void)state;
    kd_pw w;
    assert_int_equal(kd_pw_init(&w, 8, "r"), 0);
    for (int i = 1; i <= 2; i++) {
        kd_pw_entry *e = kd_pw_push(&w, i);
        strcpy(e->job_id, "same");
        kd_pw_sent(e, (uint64_t)i, 0);
    }
    assert_true(kd_pw_returned(&w, "same", 312, "NO_ROUTE"));
    assert_true(kd_pw_returned(&w, "same", 312, "NO_ROUTE"));
    assert_false(kd_pw_returned(&w, "same", 312, "NO_ROUTE"));
    assert_true(kd_pw_at(&w, 0)->returned && kd_pw_at(&w, 1)->returned);
    kd_pw_free(&w);
}

static void test_window_refused_lines_keep_input_order(void **state)
{
    (void)state;
    kd_pw w;
    assert_int_equal(kd_pw_init(&w, 8, "r"), 0);
    kd_pw_entry *a = kd_pw_push(&w, 1);
    kd_pw_sent(a, 1, 0);
    kd_pw_entry *b = kd_pw_push(&w, 2);
    kd_pw_refuse(&w, b, "delay: must be 0..30, got %d", 31);
    assert_int_equal(w.pending, 1);
    assert_null(kd_pw_done(&w)); /* line 2 waits for line 1 */
    kd_pw_ack(&w, 1, false);
    assert_int_equal(kd_pw_done(&w)->line, 1);
    kd_pw_pop(&w);
    assert_int_equal(kd_pw_done(&w)->line, 2);
    assert_string_equal(kd_pw_done(&w)->error, "delay: must be 0..30, got 31");
    kd_pw_pop(&w);
    kd_pw_free(&w);
}

static void test_window_expiry_and_full_ring(void **state)
{
    (void)state;
    kd_pw w;
    assert_int_equal(kd_pw_init(&w, 3, "r"), 0);
    kd_pw_entry *a = kd_pw_push(&w, 1);
    kd_pw_sent(a, 1, 1000);
    kd_pw_entry *b = kd_pw_push(&w, 2);
    kd_pw_sent(b, 2, 1500);
    kd_pw_entry *c = kd_pw_push(&w, 3); /* not sent yet: never expires */
    assert_null(kd_pw_push(&w, 4));
    assert_int_equal(kd_pw_next_expiry(&w, 1200, 1000), 800);
    assert_int_equal(kd_pw_expire(&w, 1999, 1000), 0);
    assert_int_equal(kd_pw_expire(&w, 2000, 1000), 1);
    assert_int_equal(a->state, KD_PW_REFUSED);
    assert_non_null(strstr(a->error, "timeout"));
    assert_int_equal(kd_pw_next_expiry(&w, 2000, 1000), 500);
    assert_int_equal(kd_pw_next_expiry(&w, 9000, 1000), 0);
    /* a late ack of the expired tag is ignored */
    assert_int_equal(kd_pw_ack(&w, 1, false), 0);
    assert_int_equal(c->state, KD_PW_PENDING);
    kd_pw_pop(&w);
    assert_non_null(kd_pw_push(&w, 4)); /* room again; the ring wraps */
    kd_pw_free(&w);
}

static void test_window_unsend_after_reconnect(void **state)
{
    (void)state;
    kd_pw w;
    assert_int_equal(kd_pw_init(&w, 8, "r"), 0);
    push_sent(&w, 3);
    kd_pw_ack(&w, 1, false);
    assert_true(kd_pw_returned(&w, "j2", 312, "NO_ROUTE"));
    kd_pw_unsend_all(&w);
    /* acks of the old connection's tags must not settle anything */
    assert_int_equal(kd_pw_ack(&w, 3, true), 0);
    assert_int_equal(kd_pw_next_expiry(&w, 0, 1000), -1);
    /* resent with new tags 1, 2 in order; the return flag was reset */
    kd_pw_sent(kd_pw_at(&w, 1), 1, 5);
    kd_pw_sent(kd_pw_at(&w, 2), 2, 5);
    assert_false(kd_pw_at(&w, 1)->returned);
    assert_memory_equal(kd_pw_at(&w, 1)->body, "body", 4);
    assert_int_equal(kd_pw_ack(&w, 2, true), 2);
    assert_int_equal(w.pending, 0);
    kd_pw_free(&w);
}

/* ---- report ---- */

static void test_report_lines(void **state)
{
    (void)state;
    char *s = kd_report_line(3, "j-3", NULL);
    assert_string_equal(s, "{\"line\":3,\"job_id\":\"j-3\",\"status\":\"confirmed\"}");
    free(s);
    s = kd_report_line(4, NULL, "invalid JSON: '[' or '{' expected near 'x' (column 1)");
    assert_string_equal(s, "{\"line\":4,\"job_id\":null,\"status\":\"refused\",\"error\":"
                           "\"invalid JSON: '[' or '{' expected near 'x' (column 1)\"}");
    free(s);
    s = kd_report_line(5, "", "a \"quoted\"\nthing\xff");
    assert_string_equal(s, "{\"line\":5,\"job_id\":null,\"status\":\"refused\",\"error\":"
                           "\"a \\\"quoted\\\"\\nthing?\"}");
    free(s);
}

static void test_report_summary(void **state)
{
    (void)state;
    char buf[256];
    kd_report_summary(buf, sizeof buf, 998, 2, 0.5);
    assert_string_equal(buf, "kone-producer: 998 confirmed, 2 refused (1000 jobs in 0.50 s, "
                             "2000 jobs/s)");
    kd_report_summary(buf, sizeof buf, 0, 0, 0);
    assert_non_null(strstr(buf, "0 confirmed, 0 refused"));
}

/* ---- input ---- */

static kd_input pipe_input(const char *data, size_t len)
{
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    assert_int_equal(write(fds[1], data, len), (ssize_t)len);
    close(fds[1]);
    kd_input in;
    memset(&in, 0, sizeof in);
    in.fd = fds[0];
    in.own_fd = true;
    in.name = "pipe";
    return in;
}

static void fill_all(kd_input *in)
{
    while (!in->eof)
        assert_int_equal(kd_input_fill(in, NULL), 0);
}

static void test_input_lines(void **state)
{
    (void)state;
    const char data[] = "{\"a\":1}\n\r\n  \nlast\r\nno newline";
    kd_input in = pipe_input(data, sizeof data - 1);
    fill_all(&in);
    char *line;
    size_t len;
    long n;
    assert_int_equal(kd_input_line(&in, &line, &len, &n), 1);
    assert_string_equal(line, "{\"a\":1}");
    assert_int_equal(n, 1);
    assert_int_equal(kd_input_line(&in, &line, &len, &n), 1);
    assert_int_equal(len, 0);
    assert_int_equal(n, 2);
    assert_int_equal(kd_input_line(&in, &line, &len, &n), 1);
    assert_string_equal(line, "  ");
    assert_int_equal(kd_input_line(&in, &line, &len, &n), 1);
    assert_string_equal(line, "last");
    assert_int_equal(n, 4);
    assert_int_equal(kd_input_line(&in, &line, &len, &n), 1);
    assert_string_equal(line, "no newline");
    assert_int_equal(n, 5);
    assert_int_equal(kd_input_line(&in, &line, &len, &n), 0);
    assert_true(kd_input_done(&in));
    kd_input_close(&in);
}

static void test_input_overlong_line_is_skipped(void **state)
{
    (void)state;
    size_t big = KD_INPUT_MAX_LINE + 10;
    char *path = strdup("/tmp/kd-input-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    char *buf = malloc(big);
    memset(buf, 'x', big);
    assert_int_equal(write(fd, "ok\n", 3), 3);
    assert_int_equal(write(fd, buf, big), (ssize_t)big);
    assert_int_equal(write(fd, "\nafter\n", 7), 7);
    close(fd);
    free(buf);

    kd_input in;
    assert_int_equal(kd_input_open(&in, path, NULL), 0);
    char *line;
    size_t len;
    long n;
    int got[3] = {0}, k = 0;
    long lines[3] = {0};
    while (k < 3) {
        int r = kd_input_line(&in, &line, &len, &n);
        if (r == 0) {
            assert_false(in.eof);
            assert_int_equal(kd_input_fill(&in, NULL), 0);
            continue;
        }
        got[k] = r;
        lines[k++] = n;
    }
    assert_int_equal(got[0], 1);
    assert_int_equal(got[1], 2);
    assert_int_equal(lines[1], 2);
    assert_int_equal(got[2], 1);
    assert_string_equal(line, "after");
    assert_int_equal(lines[2], 3);
    kd_input_close(&in);
    unlink(path);
    free(path);
}

static void test_input_open_missing_file(void **state)
{
    (void)state;
    kd_input in;
    kd_err err = {0};
    assert_int_equal(kd_input_open(&in, "/nonexistent/jobs.jsonl", &err), KD_ERR_IO);
    assert_non_null(strstr(err.msg, "/nonexistent/jobs.jsonl"));
    assert_int_equal(kd_input_open(&in, "-", NULL), 0);
    assert_int_equal(in.fd, 0);
    kd_input_close(&in);
}

/* ---- setup errors ---- */

/* What kd_prod_load prints for a command `name` given the options opts (NULL-terminated). */
static char *load_error(const char *name, const char *const *opts)
{
    char *argv[8] = {"kone-producer"};
    int argc = 1;
    for (; opts[argc - 1]; argc++)
        argv[argc] = (char *)opts[argc - 1];
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    kd_config cfg;
    assert_int_equal(kd_prod_load(&cfg, name, argc, argv, out), 2);
    fclose(out);
    return text;
}

/* Every line a setup error prints names the program once, whether the configuration's
 * message named it (an unknown option, a missing value) or not (a bad value), for both
 * commands; replay-dead's lines also name the command, once. */
static void test_setup_errors_name_the_program_once(void **state)
{
    (void)state;
    static const struct {
        const char *name;
        const char *opts[3];
        const char *line;
    } cases[] = {
        {PROD_NAME,
         {"--amqp-port=abc"},
         "kone-producer: amqp.port: must be an integer in 1..65535, got 'abc'\n"},
        {PROD_NAME, {"--bogus"}, "kone-producer: unknown option --bogus (see --help)\n"},
        {PROD_NAME, {"--amqp-port"}, "kone-producer: option --amqp-port needs a value\n"},
        {PROD_NAME " replay-dead",
         {"--bogus"},
         "kone-producer: replay-dead: unknown option --bogus (see --help)\n"},
        {PROD_NAME " replay-dead",
         {"--log-level", "loud"},
         "kone-producer: replay-dead: log.level: must be debug, info, warn or error, got 'loud'\n"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *text = load_error(cases[i].name, cases[i].opts);
        assert_string_equal(text, cases[i].line);
        free(text);
    }

    /* replay-dead's own options: their message names the command already */
    char *argv[] = {"kone-producer", "replay-dead", "--filter-reason"};
    char *rest[4];
    int nrest = 0;
    kd_replay_filter f;
    kd_err err = {0};
    assert_int_not_equal(kd_replay_parse_args(3, argv, &f, rest, &nrest, &err), 0);
    char *text = NULL;
    size_t len = 0;
    FILE *out = open_memstream(&text, &len);
    assert_non_null(out);
    kd_prod_error(out, PROD_NAME, err.msg);
    fclose(out);
    assert_string_equal(text, "kone-producer: replay-dead: --filter-reason needs a value\n");
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_window_single_and_multiple_acks),
        cmocka_unit_test(test_window_nack_and_return),
        cmocka_unit_test(test_window_duplicate_ids_return_matches_oldest),
        cmocka_unit_test(test_window_refused_lines_keep_input_order),
        cmocka_unit_test(test_window_expiry_and_full_ring),
        cmocka_unit_test(test_window_unsend_after_reconnect),
        cmocka_unit_test(test_report_lines),
        cmocka_unit_test(test_report_summary),
        cmocka_unit_test(test_input_lines),
        cmocka_unit_test(test_input_overlong_line_is_skipped),
        cmocka_unit_test(test_input_open_missing_file),
        cmocka_unit_test(test_setup_errors_name_the_program_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
