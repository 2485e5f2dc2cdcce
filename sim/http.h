/* http: kone-sim's HTTP protocol (the vhost default): the token and resources endpoints, the
 * /sim/ control endpoint and the WebSocket upgrade decision (see server.h for the context). */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include <jansson.h>
#include <libwebsockets.h>

/* The protocol's lws entry ("http"), for sim_server_opts.protocols. */
struct lws_protocols sim_http_protocol(void);
/* Writes a complete HTTP/1.1 response with a JSON body. Returns 0 or -1. */
int sim_http_respond(struct lws *wsi, int status, const json_t *body, const char *extra_header);

#endif
