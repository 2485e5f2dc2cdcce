/* stream: kone-sim's "koneapi" WebSocket protocol (stream-v2) and the idle/age sweep of its
 * connections (see server.h for the context). */
#ifndef SIM_STREAM_H
#define SIM_STREAM_H

#include <libwebsockets.h>

#include "server.h"

/* The protocol's lws entry ("koneapi"), for sim_server_opts.protocols. */
struct lws_protocols sim_stream_protocol(void);
/* Closes connections idle or older than the server's limits (sim_server_opts.sweep). */
void sim_stream_sweep(sim_server *s);

#endif
