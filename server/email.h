/* email.h - sending alert e-mail through an SMTP relay (email.c). */
#ifndef LC_SRV_EMAIL_H
#define LC_SRV_EMAIL_H

#include <stdbool.h>
#include <stddef.h>

struct srv_email {
	char relay[512];      /* smtp://host:port or smtps://host:port; "" = e-mail off */
	char from[256];       /* envelope and header sender */
	char user[256];       /* optional relay login */
	char password[256];
	bool starttls;        /* require STARTTLS on smtp:// (else used when offered) */
};

/* One message (RFC 5322 text, CRLF) to one recipient. 0 ok; -1 with err. */
int srv_email_send(const struct srv_email *cfg, const char *to, const char *msg, size_t len, char *err,
		   size_t errlen);

/* llmcap-server --smtp-relay URL --smtp-from ADDR: 0, or -1 with err */
int srv_email_configure(const char *relay, const char *from, char *err, size_t errlen);
bool srv_email_enabled(void);
/* Send the event (its generic JSON) as a plain-text alert to one recipient. 0 ok. */
int srv_email_deliver(const char *to, const char *event_json, char *err, size_t errlen);

struct srv_call;
void srv_h_emails_put(struct srv_call *c);   /* PUT /v1/admin/emails */
void srv_h_emails_get(struct srv_call *c);   /* GET /v1/admin/emails */

#endif
