/* conn_impl.h - the layout of struct lc_conn, private to the engine library (conn.c, table.c)
 * and to unit tests. The hook library never includes it: it sees the connection only through
 * the locked accessors of preload.h, so no field is read or written without c->mu and the
 * layout never crosses the two libraries.
 */
#ifndef LC_CONN_IMPL_H
#define LC_CONN_IMPL_H

#include "preload.h"

struct lc_conn {
	pthread_mutex_t mu;
	atomic_int refs;
	unsigned forkgen;
	int cls;                   /* enum lc_cls */
	int st;                    /* enum lc_st */
	int fd;                    /* socket, -1 unknown */
	bool alpn_done;            /* SSL: handshake hook already ran (LC_ONCE_ALPN) */
	bool tls;
	struct lc_target t;
	struct lc_reqparse req;
	bool req_live;
	size_t flush_off;
	struct lc_resp resp;
	bool resp_live;
	bool resp_broken;
	bool ticket_open;
	uint64_t ticket;
	struct lc_buf synth;
	size_t synth_off;
	bool eof_served;           /* the read path returned EOF after the synthetic bytes */
	bool shut_done;            /* SHUT_RD applied (LC_ONCE_SHUT) */
	int synth_err;             /* SSL: what SSL_get_error answers for our last synthetic result */
	unsigned nreq;             /* requests seen on this connection */
};

#endif
