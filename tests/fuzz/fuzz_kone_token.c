/* fuzz_kone_token: the token endpoint's answer (worker/kone_token.c). The first byte picks
 * the HTTP status the body came with (200, or one of the refusals and failures the parser
 * tells apart); the rest is the body. A parsed token must be usable: text, positive
 * lifetime; and the client secret must never appear in an error's text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "kone_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const long statuses[] = {200, 200, 200, 200, 400, 401, 403, 429, 500, 503};
    if (size < 1)
        return 0;
    long status = statuses[data[0] % (sizeof statuses / sizeof statuses[0])];
    size_t len = size - 1;
    char *body = malloc(len ? len : 1);
    if (!body)
        return 0;
    memcpy(body, data + 1, len);
    const char *secret = "s3cr3t-fuzz";
    kd_kone_token t = {0};
    kd_err err = {0};
    if (kd_kone_token_parse(body, len, status, secret, &t, &err) == 0) {
        if (!t.access_token || t.expires_in_s <= 0)
            abort();
    } else if (strstr(err.msg, secret)) {
        abort(); /* the secret leaked into an error text */
    }
    kd_kone_token_clear(&t);
    free(body);
    return 0;
}
