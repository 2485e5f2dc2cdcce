/* kone_lws: how the KONE client runs on libwebsockets, for the client itself (kone.c) and for
 * kd-bench-kone, its baseline, so both measure and log alike: a client-only context (no
 * listening port, TLS initialised by lws once, the CA bundle of kone.ca_file), and lws's own
 * log lines (errors and warnings) in ours with the access token masked, because lws may
 * quote the upgrade URL, whose ?accessToken= carries it. Layer 0: knows no connection or job.
 */
#ifndef KD_WORKER_KONE_LWS_H
#define KD_WORKER_KONE_LWS_H

#include <libwebsockets.h>

/* Sends lws's errors and warnings to our log (kk_lws_log_line), then creates a client-only
 * context: protocols, ca_file (NULL or "": the system CAs), user (lws_context_user),
 * timeout_s (lws's timeout of a connection that does not progress). NULL when lws cannot. */
struct lws_context *kk_lws_context(const struct lws_protocols *protocols, const char *ca_file,
                                   void *user, unsigned timeout_s);

/* Replaces, in place, the value of every accessToken= in text with "***". */
void kk_lws_mask_token(char *text);

/* lws's log callback: the line in our log as "lws: ...", the token masked (lws errors as
 * errors, the rest as warnings). */
void kk_lws_log_line(int level, const char *line);

#endif
