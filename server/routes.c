/* routes.c - every HTTP route of llmcap-server, in one table.
 *
 * To add a route: write a handler `void srv_h_NAME(struct srv_call *c)` in
 * the module it belongs to (declare it in srv.h), and add one line here. The
 * router (router.c) matches the method and the pattern, checks the token
 * (auth) and the body's size (body_max: 0 means no body) before the body is
 * read, parses a JSON object body when json is true (c->body), and hands the
 * handler c->id (an "{id}" capture) and c->param[] (every capture, in order).
 * A handler answers through c->rs (srv_resp_json, srv_resp_error).
 *
 * Order matters only between patterns that match the same path: the first
 * row whose pattern and method match wins.
 */
#include "dash.h"
#include "email.h"
#include "metrics.h"
#include "srv.h"

#define ADMIN_BODY SRV_BODY_MAX

const struct srv_route srv_routes[] = {
	/* method   pattern                           auth            body_max       json   handler              data */
	{"GET",    "/healthz",                        SRV_AUTH_NONE,  0,             false, srv_h_healthz,       NULL},
	{"GET",    "/metrics",                        SRV_AUTH_READ,  0,             false, srv_h_metrics,       NULL},

	/* the dashboard: its files, and its session (dash.c) */
	{"GET",    "/",                               SRV_AUTH_NONE,  0,             false, srv_h_dash_file,     "/"},
	{"GET",    "/ui/app.js",                      SRV_AUTH_NONE,  0,             false, srv_h_dash_file,     "/ui/app.js"},
	{"GET",    "/ui/app.css",                     SRV_AUTH_NONE,  0,             false, srv_h_dash_file,     "/ui/app.css"},
	{"GET",    "/ui/session",                     SRV_AUTH_NONE,  0,             false, srv_h_dash_session_get, NULL},
	{"POST",   "/ui/session",                     SRV_AUTH_NONE,  4096,          true,  srv_h_dash_login,    NULL},
	{"DELETE", "/ui/session",                     SRV_AUTH_NONE,  0,             false, srv_h_dash_logout,   NULL},

	/* hosts */
	{"GET",    "/v1/policy",                      SRV_AUTH_NONE,  0,             false, srv_h_policy,        NULL},
	{"POST",   "/v1/usage",                       SRV_AUTH_HOST,  SRV_USAGE_MAX, false, srv_h_usage_post,    NULL},
	{"POST",   "/v1/leases",                      SRV_AUTH_HOST,  SRV_LEASES_MAX, true, srv_h_leases_post,   NULL},
	{"POST",   "/v1/invites/{code}/redeem",       SRV_AUTH_NONE,  ADMIN_BODY,    true,  srv_h_invite_redeem, NULL},
	{"POST",   "/v1/hosts/enroll",                SRV_AUTH_NONE,  4096,          true,  srv_h_host_enroll,   NULL},
	{"POST",   "/v1/events",                      SRV_AUTH_HOST,  ADMIN_BODY,    true,  srv_h_events_post,   NULL},

	/* admin */
	{"GET",    "/v1/usage",                       SRV_AUTH_READ,  0,             false, srv_h_usage_get,     NULL},
	{"GET",    "/v1/admin/policy",                SRV_AUTH_READ,  0,             false, srv_h_admin_policy,  NULL},

	{"GET",    "/v1/admin/keys",                  SRV_AUTH_READ,  0,             false, srv_h_obj_list,      "keys"},
	{"POST",   "/v1/admin/keys",                  SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_key_create,    NULL},
	{"GET",    "/v1/admin/keys/{id}",             SRV_AUTH_READ,  0,             false, srv_h_obj_get,       "keys"},
	{"PATCH",  "/v1/admin/keys/{id}",             SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_obj_patch,     "keys"},
	{"DELETE", "/v1/admin/keys/{id}",             SRV_AUTH_ADMIN, 0,             false, srv_h_key_revoke,    "keys"},

	{"GET",    "/v1/admin/teams",                 SRV_AUTH_READ,  0,             false, srv_h_obj_list,      "teams"},
	{"GET",    "/v1/admin/teams/{id}",            SRV_AUTH_READ,  0,             false, srv_h_obj_get,       "teams"},
	{"PUT",    "/v1/admin/teams/{id}",            SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_obj_put,       "teams"},
	{"PATCH",  "/v1/admin/teams/{id}",            SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_obj_patch,     "teams"},
	{"DELETE", "/v1/admin/teams/{id}",            SRV_AUTH_ADMIN, 0,             false, srv_h_obj_del,       "teams"},

	{"GET",    "/v1/admin/customers",             SRV_AUTH_READ,  0,             false, srv_h_piece_get,     "customers"},
	{"PUT",    "/v1/admin/customers",             SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_piece_put,     "customers"},
	{"GET",    "/v1/admin/customers/{id}",        SRV_AUTH_READ,  0,             false, srv_h_obj_get,       "customers"},
	{"PUT",    "/v1/admin/customers/{id}",        SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_obj_put,       "customers"},
	{"DELETE", "/v1/admin/customers/{id}",        SRV_AUTH_ADMIN, 0,             false, srv_h_obj_del,       "customers"},

	{"GET",    "/v1/admin/org",                   SRV_AUTH_READ,  0,             false, srv_h_piece_get,     "org"},
	{"PUT",    "/v1/admin/org",                   SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_piece_put,     "org"},
	{"GET",    "/v1/admin/webhooks",              SRV_AUTH_READ,  0,             false, srv_h_piece_get,     "webhooks"},
	{"PUT",    "/v1/admin/webhooks",              SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_piece_put,     "webhooks"},
	{"GET",    "/v1/admin/providers",             SRV_AUTH_READ,  0,             false, srv_h_piece_get,     "providers"},
	{"PUT",    "/v1/admin/providers",             SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_piece_put,     "providers"},
	{"GET",    "/v1/admin/prices",                SRV_AUTH_READ,  0,             false, srv_h_piece_get,     "prices"},
	{"PUT",    "/v1/admin/prices",                SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_piece_put,     "prices"},
	{"GET",    "/v1/admin/emails",                SRV_AUTH_READ,  0,             false, srv_h_emails_get,    NULL},
	{"PUT",    "/v1/admin/emails",                SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_emails_put,    NULL},
	{"GET",    "/v1/admin/settings",              SRV_AUTH_READ,  0,             false, srv_h_piece_get,     "settings"},
	{"PUT",    "/v1/admin/settings",              SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_piece_put,     "settings"},

	{"GET",    "/v1/admin/invites",               SRV_AUTH_READ,  0,             false, srv_h_invite_list,   NULL},
	{"POST",   "/v1/admin/invites",               SRV_AUTH_ADMIN, ADMIN_BODY,    true,  srv_h_invite_create, NULL},
	{"DELETE", "/v1/admin/invites/{code}",        SRV_AUTH_ADMIN, 0,             false, srv_h_invite_revoke, NULL},

	{"POST",   "/v1/admin/hosts/enroll",          SRV_AUTH_ADMIN, 4096,          false, srv_h_host_enroll_code, NULL},
	{"GET",    "/v1/admin/hosts",                 SRV_AUTH_READ,  0,             false, srv_h_host_list,     NULL},
	{"GET",    "/v1/admin/hosts/{id}",            SRV_AUTH_READ,  0,             false, srv_h_host_get,      NULL},
	{"DELETE", "/v1/admin/hosts/{id}",            SRV_AUTH_ADMIN, 0,             false, srv_h_host_delete,   NULL},

	{"GET",    "/v1/admin/leases",                SRV_AUTH_READ,  0,             false, srv_h_leases_get,    NULL},
	{"GET",    "/v1/admin/audit",                 SRV_AUTH_READ,  0,             false, srv_h_audit,         NULL},

	{NULL, NULL, 0, 0, false, NULL, NULL},
};
