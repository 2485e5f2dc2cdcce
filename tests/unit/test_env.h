/* test_env.h: a unit test that checks configuration defaults must not see the KD_* settings of
 * the shell that runs it (a developer who sourced a dev stack's .dev/env exports 25 of them;
 * each would override a default the test expects). */
#ifndef TEST_ENV_H
#define TEST_ENV_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern char **environ;

/* Unsets every KD_* variable but those that locate the tree (KD_SRC_DIR, KD_BIN_DIR). */
static inline void test_env_clear_kd(void)
{
    for (int again = 1; again;) {
        again = 0;
        for (char **e = environ; *e; e++) {
            const char *eq = strchr(*e, '=');
            if (strncmp(*e, "KD_", 3) != 0 || !eq || !strncmp(*e, "KD_SRC_DIR=", 11) ||
                !strncmp(*e, "KD_BIN_DIR=", 11))
                continue;
            char name[128];
            size_t n = (size_t)(eq - *e) < sizeof name ? (size_t)(eq - *e) : sizeof name - 1;
            memcpy(name, *e, n);
            name[n] = '\0';
            unsetenv(name); /* changes environ: walk it again from the start */
            again = 1;
            break;
        }
    }
}

#endif
