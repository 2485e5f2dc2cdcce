/* kone_lws.c: see kone_lws.h. */
#include "kone_lws.h"

#include <string.h>

#include "kd_log.h"

struct lws_context *kk_lws_context(const struct lws_protocols *protocols, const char *ca_file,
                                   void *user, unsigned timeout_s)
{
    lws_set_log_level(LLL_ERR | LLL_WARN, kk_lws_log_line);
    struct lws_context_creation_info info;
    memset(&info, 0, sizeof info);
    info.port = CONTEXT_PORT_NO_LISTEN;
    info.protocols = protocols;
    info.options = LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
    info.client_ssl_ca_filepath = ca_file && *ca_file ? ca_file : NULL;
    info.user = user;
    info.gid = -1;
    info.uid = -1;
    info.timeout_secs = timeout_s;
    return lws_create_context(&info);
}

void kk_lws_mask_token(char *text)
{
    for (char *p = strstr(text, "accessToken="); p; p = strstr(p, "accessToken=")) {
        p += 12;
        size_t n = strcspn(p, "& \"'\n");
        if (n) {
            memmove(p + 3, p + n, strlen(p + n) + 1);
            // NOLINTNEXTLINE(bugprone-not-null-terminated-result): 3 bytes inside a string
            memcpy(p, "***", 3);
        }
    }
}

void kk_lws_log_line(int level, const char *line)
{
    kd_log_foreign((level & LLL_ERR) ? KD_LOG_ERROR : KD_LOG_WARN, "lws", line, kk_lws_mask_token);
}
