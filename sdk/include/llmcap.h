/**
 * @file llmcap.h
 * @brief llmcap: spend and usage limits on LLM API calls, enforced inside the calling process.
 *
 * This header is the whole public surface of libllmcap. Names start with
 * `llmcap_` / `LLMCAP_`; handles are opaque.
 *
 * The flow for one provider call:
 *
 *     llmcap *lc;  llmcap_call *call;
 *     llmcap_open(&lc, NULL);
 *     llmcap_admit(lc, url, headers, body, len, &call);       // one atomic host-wide decision
 *     if (llmcap_call_verdict(call) == LLMCAP_DENY) {          // a limit would be crossed:
 *         ... use llmcap_call_status() / llmcap_call_body() ... // nothing was sent
 *     } else {
 *         ... send the request yourself ...
 *         llmcap_settle_response(call, status, content_type, resp, resp_len);
 *     }
 *     llmcap_call_free(call);
 *
 * or, with libcurl, llmcap_curl_post() does all of it.
 *
 * Threads: every function is thread-safe; one llmcap handle may be shared by
 * threads. An llmcap_call belongs to one thread at a time.
 * fork(): handles stay usable in parent and child (the child reopens the store
 * on first use). Settle a call in the process that admitted it.
 * Errors: functions that act return an llmcap_err (LLMCAP_OK == 0); the
 * enum is append-only and values are never renumbered.
 */
#ifndef LLMCAP_H
#define LLMCAP_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LLMCAP_VERSION_MAJOR 0
#define LLMCAP_VERSION_MINOR 1
#define LLMCAP_VERSION_PATCH 0
#define LLMCAP_VERSION_STRING "0.1.0"
/** 0xXXYYZZ: major, minor, patch. */
#define LLMCAP_VERSION_NUM ((LLMCAP_VERSION_MAJOR << 16) | (LLMCAP_VERSION_MINOR << 8) | LLMCAP_VERSION_PATCH)
#define LLMCAP_AT_LEAST_VERSION(x, y, z) (LLMCAP_VERSION_NUM >= (((x) << 16) | ((y) << 8) | (z)))

#if defined(__GNUC__)
#define LLMCAP_EXPORT __attribute__((visibility("default")))
#define LLMCAP_WUR __attribute__((warn_unused_result))
#else
#define LLMCAP_EXPORT
#define LLMCAP_WUR
#endif

/** Error codes. Append-only. */
typedef enum {
	LLMCAP_OK = 0,
	LLMCAP_E_INVAL = 1,       /**< bad argument (NULL handle, malformed URL, ...) */
	LLMCAP_E_NOMEM = 2,       /**< out of memory */
	LLMCAP_E_STORE = 3,       /**< the state store exists but is unusable (the call is denied, fail-closed) */
	LLMCAP_E_NOPOLICY = 4,    /**< no policy installed (calls pass) */
	LLMCAP_E_STATE = 5,       /**< the call was already settled / is not allowed */
	LLMCAP_E_RESPONSE = 6,    /**< the response could not be read for usage (charged at the estimate) */
	LLMCAP_E_CURL = 7,        /**< libcurl failed (llmcap_curl_post); the call is settled as failed */
} llmcap_err;

/** A static, human-readable string for an error code. Never NULL. */
LLMCAP_EXPORT const char *llmcap_strerror(llmcap_err err);
/** The library's version string at run time ("0.1.0"), to compare with LLMCAP_VERSION_STRING. */
LLMCAP_EXPORT const char *llmcap_version(void);
/** The library's version number at run time (LLMCAP_VERSION_NUM of the build). */
LLMCAP_EXPORT unsigned llmcap_version_num(void);

/** Opaque library handle. */
typedef struct llmcap llmcap;
/** Opaque handle for one admitted (or denied) provider call. */
typedef struct llmcap_call llmcap_call;

/** What the policy said about a call. */
typedef enum {
	LLMCAP_PASS = 0,   /**< not a provider host, or no policy: nothing is counted */
	LLMCAP_ALLOW = 1,  /**< allowed; the worst case is reserved until settled */
	LLMCAP_DENY = 2,   /**< refused: do not send; answer the caller with the synthetic response */
} llmcap_verdict;

/**
 * @brief Open a handle on the host's state.
 * @param[out] out the handle, set only on success; free with llmcap_close().
 * @param[in] state_dir the state directory, or NULL for the default lookup
 *   ($LLMCAP_STATE_DIR, /var/lib/llmcap when writable, $XDG_STATE_HOME/llmcap).
 *   A non-NULL dir applies to the whole process (there is one store per process).
 * @return LLMCAP_OK; the store itself is opened lazily on the first call.
 */
LLMCAP_EXPORT llmcap_err llmcap_open(llmcap **out, const char *state_dir) LLMCAP_WUR;
/** Close a handle. NULL is a no-op. Calls admitted through it must be freed first. */
LLMCAP_EXPORT void llmcap_close(llmcap *lc);

/**
 * @brief Decide on one request before any byte of it is sent.
 *
 * Runs one atomic transaction on the host store: matches the provider by the
 * URL's host, identifies the key (Authorization: Bearer, x-api-key, api-key),
 * the customer and the model, estimates the worst case, checks every limit and
 * reserves. Never does network I/O.
 * @param[in] url the full request URL (https://api.openai.com/v1/chat/completions).
 * @param[in] headers NULL-terminated array of "Name: value" strings, or NULL. Borrowed.
 * @param[in] body the request body (JSON), may be NULL when body_len is 0. Borrowed.
 * @param[out] out the call, set only on success (even for a DENY); free with llmcap_call_free().
 * @return LLMCAP_OK (look at llmcap_call_verdict()), LLMCAP_E_INVAL, LLMCAP_E_NOMEM (memory ran out
 *   reading the request or writing the DENY: nothing is reserved, *out is not set).
 *   A store failure still returns LLMCAP_OK with a DENY (status 503) when a policy is known.
 */
LLMCAP_EXPORT llmcap_err llmcap_admit(llmcap *lc, const char *url, const char *const *headers, const void *body,
				      size_t body_len, llmcap_call **out) LLMCAP_WUR;

LLMCAP_EXPORT llmcap_verdict llmcap_call_verdict(const llmcap_call *call);
/** For a DENY: the HTTP status the caller should see (429 limit, 401 key, 400 unreadable request,
 *  503 store unusable). 0 otherwise. */
LLMCAP_EXPORT int llmcap_call_status(const llmcap_call *call);
/** For a DENY: the message ("llmcap: monthly cost limit of $50.00 for key 'ci' reached ..."). Owned by the
 *  call, valid until llmcap_call_free(). "" otherwise. */
LLMCAP_EXPORT const char *llmcap_call_message(const llmcap_call *call);
/** For a 429: the limit ("key:ci:cost:monthly"), as in the x-llmcap-limit header. Owned by the call. */
LLMCAP_EXPORT const char *llmcap_call_limit(const llmcap_call *call);
/** For a DENY: seconds until the limit resets (the retry-after header). */
LLMCAP_EXPORT long llmcap_call_retry_after(const llmcap_call *call);
/** For a DENY: 0 when waiting will not help soon (budgets; x-should-retry: false), 1 otherwise. */
LLMCAP_EXPORT int llmcap_call_should_retry(const llmcap_call *call);
/** For a DENY: the provider-shaped JSON error body. Owned by the call, valid until llmcap_call_free(). */
LLMCAP_EXPORT const char *llmcap_call_body(const llmcap_call *call, size_t *len);
/** For a DENY: a complete HTTP/1.1 response (status line, retry-after, x-should-retry,
 *  x-llmcap-limit, connection: close, body). Owned by the call. */
LLMCAP_EXPORT const char *llmcap_call_response(const llmcap_call *call, size_t *len);

/**
 * @brief Settle an allowed call from the provider's response body.
 *
 * Reads the usage from a JSON body or a text/event-stream body (chat chunks with
 * include_usage, Responses response.completed, Anthropic message_start/message_delta)
 * and charges it (cached input at its own price). Without usage: an HTTP error
 * (>= 400) charges the request only; a success charges the reserved estimate.
 * @param[in] content_type the response's Content-Type, or NULL (then sniffed).
 * @return LLMCAP_OK, LLMCAP_E_STATE (already settled, or not an ALLOW: then a no-op),
 *   LLMCAP_E_RESPONSE (unreadable body: charged at the estimate), LLMCAP_E_STORE.
 */
LLMCAP_EXPORT llmcap_err llmcap_settle_response(llmcap_call *call, int http_status, const char *content_type,
						const void *body, size_t len);
/** Settle with usage you read yourself (tokens). input excludes cached input. */
LLMCAP_EXPORT llmcap_err llmcap_settle_usage(llmcap_call *call, int http_status, long long input,
					     long long cached_input, long long output);
/** Free a call. An allowed call that was never settled is charged at its estimate (no reservation leaks).
 *  NULL is a no-op. */
LLMCAP_EXPORT void llmcap_call_free(llmcap_call *call);

/**
 * @brief libcurl convenience: admit, POST, settle, in one call.
 *
 * Sets CURLOPT_URL, CURLOPT_HTTPHEADER, CURLOPT_POSTFIELDS/POSTFIELDSIZE and a
 * write callback on `curl_easy` (a CURL *), performs, and settles from the
 * response. On a DENY nothing is sent and the synthetic response is returned
 * as if the provider had answered. Other options you set on the handle
 * (timeouts, CA file, ...) are kept. After a transfer the handle's
 * CURLOPT_WRITEFUNCTION/WRITEDATA and CURLOPT_HEADERFUNCTION/HEADERDATA are
 * back at libcurl's defaults (libcurl cannot report what you had set): set your
 * own again before reusing the handle for other transfers. URL, HTTPHEADER and
 * POSTFIELDS stay set and point at your memory.
 * @param[in] curl_easy a CURL * easy handle. Borrowed.
 * @param[in] headers a struct curl_slist * of request headers, or NULL. Borrowed.
 * @param[out] status the HTTP status (200, 429, ...).
 * @param[out] response the response body, NUL-terminated, malloc'd: free with llmcap_free(). May be NULL
 *   if you do not want it.
 * @param[out] verdict optional: what llmcap decided.
 * @return LLMCAP_OK when a response (real or synthetic) is in *status; LLMCAP_E_CURL on a transport
 *   error (the call is settled as failed: the request is counted, nothing is charged).
 */
LLMCAP_EXPORT llmcap_err llmcap_curl_post(llmcap *lc, void *curl_easy, const char *url, const void *headers,
					  const void *body, size_t body_len, long *status, char **response,
					  size_t *response_len, llmcap_verdict *verdict);
/** Free memory returned by the library. NULL is a no-op. */
LLMCAP_EXPORT void llmcap_free(void *p);

#ifdef __cplusplus
}
#endif
#endif
