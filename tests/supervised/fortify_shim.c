/* fortify_shim.c - the glibc _FORTIFY_SOURCE entry points that Debian's static mbed TLS archives
 * (built against glibc) call, for linking them into the static musl test client: each does the
 * plain call (the bounds were checked at compile time of the archive, not re-checked here). */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/select.h>

void *__memcpy_chk(void *d, const void *s, size_t n, size_t dl) { (void)dl; return memcpy(d, s, n); }
void *__memset_chk(void *d, int c, size_t n, size_t dl) { (void)dl; return memset(d, c, n); }
long __fdelt_chk(long d) { return d / (8 * (long)sizeof(long)); }
int __vsnprintf_chk(char *s, size_t n, int fl, size_t sl, const char *f, va_list ap)
{
	(void)fl; (void)sl;
	return vsnprintf(s, n, f, ap);
}
int __snprintf_chk(char *s, size_t n, int fl, size_t sl, const char *f, ...)
{
	va_list ap;
	int r;

	(void)fl; (void)sl;
	va_start(ap, f);
	r = vsnprintf(s, n, f, ap);
	va_end(ap);
	return r;
}
int __printf_chk(int fl, const char *f, ...)
{
	va_list ap;
	int r;

	(void)fl;
	va_start(ap, f);
	r = vprintf(f, ap);
	va_end(ap);
	return r;
}
