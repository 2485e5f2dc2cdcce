/* input.h: kone-producer's line reader over a file descriptor.
 *
 * Why not getline(): a blocking read on a slow pipe (tail -f | kone-producer) would stop
 * the AMQP connection from being served, so heartbeats and confirms would wait for the
 * next input line. The main loop polls the descriptor together with the broker's socket
 * and calls kd_input_fill() only when poll() said it is readable: one read() then never
 * blocks, and stdin is left in blocking mode (it may be a terminal shared with the shell).
 */
#ifndef KD_PRODUCER_INPUT_H
#define KD_PRODUCER_INPUT_H

#include <stdbool.h>
#include <stddef.h>

#include "kd_err.h"

#define KD_INPUT_MAX_LINE (1024 * 1024)

typedef struct kd_input {
    int fd;
    bool own_fd;
    bool eof;
    bool skipping; /* inside a line longer than KD_INPUT_MAX_LINE */
    char *buf;
    size_t off, len, cap;
    long lineno;      /* number of the last line handed out */
    const char *name; /* for messages: the path or "stdin" */
} kd_input;

/* path NULL or "-" reads stdin. */
int kd_input_open(kd_input *in, const char *path, kd_err *err);
void kd_input_close(kd_input *in);

/* One read(): appends what is there; sets eof at end of input. */
int kd_input_fill(kd_input *in, kd_err *err);

/* 1: the next line is in *line (NUL-terminated, without "\n" or "\r\n", valid until the
 * next call) and its number in *lineno; 2: line *lineno was longer than KD_INPUT_MAX_LINE
 * (skipped); 0: no complete line buffered (fill, or at eof: the input is done). */
int kd_input_line(kd_input *in, char **line, size_t *len, long *lineno);

/* True when no more lines will come. */
bool kd_input_done(const kd_input *in);

#endif
