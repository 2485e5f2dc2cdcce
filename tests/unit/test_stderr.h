/* test_stderr.h: what a call writes to stderr (the log), for a test that reads what the user
 * would see there. Used by unit and integration tests (include it by its path). */
#ifndef TEST_STDERR_H
#define TEST_STDERR_H

#include <stdio.h>
#include <unistd.h>

/* Sends stderr into a temporary file until test_stderr_end; *saved keeps the old stderr.
 * NULL when no temporary file could be made (stderr left as it was). */
static inline FILE *test_stderr_begin(int *saved)
{
    *saved = -1;
    fflush(stderr);
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    *saved = dup(STDERR_FILENO);
    if (*saved < 0 || dup2(fileno(f), STDERR_FILENO) != STDERR_FILENO) {
        if (*saved >= 0)
            close(*saved);
        fclose(f);
        return NULL;
    }
    return f;
}

/* Restores stderr and copies what was written meanwhile into buf (NUL-terminated, cut at
 * len - 1 bytes). */
static inline void test_stderr_end(int saved, FILE *f, char *buf, size_t len)
{
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    rewind(f);
    size_t n = fread(buf, 1, len - 1, f);
    buf[n] = '\0';
    fclose(f);
}

#endif
