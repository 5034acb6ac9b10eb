/* engine_api.c - the one symbol libllmcap_preload_engine.so exports: the table of its functions
 * that the hook library (hook_engine.c) calls once it has dlopen()ed the engine. Built into the
 * engine library only (not into unit tests, which link the modules directly).
 */
#include "preload.h"

static void eng_log(int level, const char *msg)
{
	lc_log(level, "%s", msg);
}

static const struct lc_engine_api api = {
	.version = LC_ENGINE_API_VERSION,
	.size = sizeof(struct lc_engine_api),
	.layout = LC_ENGINE_LAYOUT,
	.cls_lookup = lc_cls_lookup,
	.cls_priced_request = lc_cls_priced_request,
	.cls_peer = lc_cls_peer,
	.cls_is_http_request = lc_cls_is_http_request,
	.cls_host_header = lc_cls_host_header,
	.cls_is_h2_preface = lc_cls_is_h2_preface,
	.cls_client_hello = lc_cls_client_hello,
	.cls_client_hello_sni = lc_cls_client_hello_sni,
	.cls_url = lc_cls_url,
	.conn_new = lc_conn_new,
	.conn_new_provider = lc_conn_new_provider,
	.conn_view = lc_conn_view,
	.conn_classify = lc_conn_classify,
	.conn_set_fd = lc_conn_set_fd,
	.conn_set_synth_err = lc_conn_set_synth_err,
	.conn_once = lc_conn_once,
	.conn_ref = lc_conn_ref,
	.conn_put = lc_conn_put,
	.conn_write = lc_conn_write,
	.conn_flush_buf = lc_conn_flush_buf,
	.conn_flushed = lc_conn_flushed,
	.conn_flush_failed = lc_conn_flush_failed,
	.conn_read_mode = lc_conn_read_mode,
	.conn_synth_read = lc_conn_synth_read,
	.conn_feed = lc_conn_feed,
	.conn_eof = lc_conn_eof,
	.conn_finish = lc_conn_finish,
	.tab_get = lc_tab_get,
	.tab_put = lc_tab_put,
	.tab_take = lc_tab_take,
	.tab_count = lc_tab_count,
	.tab_atfork_prepare = lc_tab_atfork_prepare,
	.tab_atfork_parent = lc_tab_atfork_parent,
	.tab_atfork_child = lc_tab_atfork_child,
	.cr_record = lc_cr_record,
	.cr_lookup = lc_cr_lookup,
	.cr_forget_fd = lc_cr_forget_fd,
	.log_level = lc_log_level,
	.log = eng_log,
};

LC_EXPORT const struct lc_engine_api *lc_preload_engine_api(unsigned version)
{
	return version == LC_ENGINE_API_VERSION ? &api : NULL;
}
