/* input.c: see input.h. One growable buffer; consumed bytes are moved out on refill. */
#include "input.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define KD_INPUT_CHUNK 65536

int kd_input_open(kd_input *in, const char *path, kd_err *err)
{
    memset(in, 0, sizeof *in);
    if (!path || strcmp(path, "-") == 0) {
        in->fd = STDIN_FILENO;
        in->name = "stdin";
        return 0;
    }
    in->fd = open(path, O_RDONLY | O_CLOEXEC);
    if (in->fd < 0)
        return kd_err_set(err, KD_ERR_IO, "cannot open %s: %s", path, kd_strerror(errno));
    in->own_fd = true;
    in->name = path;
    return 0;
}

void kd_input_close(kd_input *in)
{
    if (in->own_fd && in->fd >= 0)
        close(in->fd);
    free(in->buf);
    memset(in, 0, sizeof *in);
    in->fd = -1;
}

int kd_input_fill(kd_input *in, kd_err *err)
{
    if (in->eof)
        return 0;
    if (in->off > 0) { /* drop what was handed out already */
        memmove(in->buf, in->buf + in->off, in->len - in->off);
        in->len -= in->off;
        in->off = 0;
    }
    if (in->cap - in->len < KD_INPUT_CHUNK + 1) {
        size_t cap = in->len + KD_INPUT_CHUNK + 1;
        char *b = realloc(in->buf, cap);
        /* GCOVR_EXCL_START: allocation failure */
        if (!b)
            return kd_err_set(err, KD_ERR_NOMEM, "out of memory reading %s", in->name);
        /* GCOVR_EXCL_STOP */
        in->buf = b;
        in->cap = cap;
    }
    ssize_t n;
    do {
        n = read(in->fd, in->buf + in->len, KD_INPUT_CHUNK);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return 0;
        return kd_err_set(err, KD_ERR_IO, "cannot read %s: %s", in->name, kd_strerror(errno));
    }
    if (n == 0)
        in->eof = true;
    in->len += (size_t)n;
    return 0;
}

int kd_input_line(kd_input *in, char **line, size_t *len, long *lineno)
{
    for (;;) {
        char *start = in->buf + in->off;
        size_t avail = in->len - in->off;
        char *nl = avail ? memchr(start, '\n', avail) : NULL;
        if (in->skipping) {
            /* the rest of an overlong line: drop it, report the line once it ends */
            in->off += nl ? (size_t)(nl - start) + 1 : avail;
            if (!nl && !in->eof)
                return 0;
            in->skipping = false;
            *lineno = in->lineno;
            return 2;
        }
        size_t n;
        if (nl) {
            n = (size_t)(nl - start);
        } else if (avail > (size_t)KD_INPUT_MAX_LINE) {
            in->lineno++;
            in->skipping = true;
            continue;
        } else if (in->eof && avail > 0) {
            n = avail; /* last line without a newline */
        } else {
            return 0;
        }
        if (n > (size_t)KD_INPUT_MAX_LINE) {
            in->lineno++;
            in->off += n + (nl ? 1 : 0);
            *lineno = in->lineno;
            return 2;
        }
        in->off += n + (nl ? 1 : 0);
        if (n > 0 && start[n - 1] == '\r')
            n--;
        start[n] = '\0'; /* overwrites the '\n' (or the spare byte after the data) */
        *line = start;
        *len = n;
        *lineno = ++in->lineno;
        return 1;
    }
}

bool kd_input_done(const kd_input *in)
{
    return in->eof && in->off == in->len && !in->skipping;
}
