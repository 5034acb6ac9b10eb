/* secure_exec.h - would the dynamic loader run this file in secure-execution mode (and so drop
 * LD_PRELOAD)? Shared by `llmcap run` (cli/run.c) and the exec hooks (preload/hook_exec.c).
 *
 * Async-signal-safe (a vfork child may call it): no malloc, no locks, only fstatat and the
 * getxattr family on a caller-side stack buffer.
 */
#ifndef LC_SECURE_EXEC_H
#define LC_SECURE_EXEC_H

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/xattr.h>

/* Why the loader would ignore LD_PRELOAD for `path` (resolved like execveat(dirfd, path, ...,
 * atflags): AT_FDCWD for a plain path), or NULL (not such a file, or it cannot be examined). */
static inline const char *lc_secure_exec_reason_at(int dirfd, const char *path, int atflags)
{
	struct stat st;
	char pbuf[4096 + 32];
	ssize_t x;

	if (!path || fstatat(dirfd, path, &st, atflags & (AT_SYMLINK_NOFOLLOW | AT_EMPTY_PATH)) != 0)
		return NULL;
	if (st.st_mode & S_ISUID)
		return "setuid";
	if ((st.st_mode & S_ISGID) && (st.st_mode & S_IXGRP))
		return "setgid";
	if (!path[0] && (atflags & AT_EMPTY_PATH)) {
		x = fgetxattr(dirfd, "security.capability", NULL, 0);
	} else {
		const char *p = path;

		if (path[0] != '/' && dirfd != AT_FDCWD) {
			/* "/proc/self/fd/N/path", built by hand (no snprintf) */
			char num[16];
			size_t nl = 0, pl = strlen(path), off;
			unsigned v = (unsigned)dirfd;

			if (dirfd < 0 || pl > 4096)
				return NULL;
			do
				num[nl++] = (char)('0' + v % 10);
			while ((v /= 10) && nl < sizeof(num));
			memcpy(pbuf, "/proc/self/fd/", 14);
			off = 14;
			while (nl)
				pbuf[off++] = num[--nl];
			pbuf[off++] = '/';
			memcpy(pbuf + off, path, pl + 1);
			p = pbuf;
		}
		x = (atflags & AT_SYMLINK_NOFOLLOW) ? lgetxattr(p, "security.capability", NULL, 0)
						    : getxattr(p, "security.capability", NULL, 0);
	}
	if (x > 0)
		return "has file capabilities";
	return NULL;
}

#endif
