/* hook_exec.c - exec of a program the preload cannot follow.
 *
 * The kernel runs a setuid, setgid or file-capability program in secure-execution mode, where
 * the dynamic loader drops an LD_PRELOAD given by path: the program would run without limits.
 * When the environment handed to the new program still carries this library in LD_PRELOAD, such
 * an exec is refused (EPERM, one line on stderr), as torsocks does and as `llmcap run` does for
 * its own command. Every other exec goes straight to libc.
 *
 * These hooks may run in a vfork child (posix_spawn, system, a shell's vfork+exec): no malloc,
 * no locks, no engine, only fstatat/getxattr/access and a raw write(2). The real functions are
 * resolved in the constructor (lc_exec_resolve), so an exec never calls dlsym in the common case.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "preload.h"
#include "secure_exec.h"

#define PRELOAD_NAME "libllmcap_preload.so"

extern char **environ;

typedef int (*spawn_fn)(pid_t *, const char *, const posix_spawn_file_actions_t *,
			const posix_spawnattr_t *, char *const[], char *const[]);

static int (*r_execve)(const char *, char *const[], char *const[]);
static int (*r_execv)(const char *, char *const[]);
static int (*r_execvp)(const char *, char *const[]);
static int (*r_execvpe)(const char *, char *const[], char *const[]);
static int (*r_execveat)(int, const char *, char *const[], char *const[], int);
static spawn_fn r_posix_spawn;
static spawn_fn r_posix_spawnp;

#define REAL(fn) LC_REAL(r_##fn, #fn, NULL, fn)

void lc_exec_resolve(void);
void lc_exec_resolve(void)
{
	(void)REAL(execve);
	(void)REAL(execv);
	(void)REAL(execvp);
	(void)REAL(execvpe);
	(void)REAL(execveat);
	(void)REAL(posix_spawn);
	(void)REAL(posix_spawnp);
}

/* does this environment still load the shim? */
static bool env_has_shim(char *const envp[])
{
	size_t i;

	if (!envp)
		return false;
	for (i = 0; envp[i]; i++)
		if (strncmp(envp[i], "LD_PRELOAD=", 11) == 0 && strstr(envp[i] + 11, PRELOAD_NAME))
			return true;
	return false;
}

static size_t cat(char *out, size_t off, size_t cap, const char *s)
{
	size_t n = strlen(s);

	if (off + n > cap)
		n = cap > off ? cap - off : 0;
	memcpy(out + off, s, n);
	return off + n;
}

static void say_refused(const char *file, const char *why)
{
	const char *lv = getenv("LLMCAP_LOG");
	char line[1024];
	size_t n = 0;

	if (lv && strcmp(lv, "off") == 0)
		return;
	n = cat(line, n, sizeof(line) - 1, "llmcap: refusing to exec ");
	n = cat(line, n, sizeof(line) - 1, file);
	n = cat(line, n, sizeof(line) - 1, ": it is ");
	n = cat(line, n, sizeof(line) - 1, why);
	n = cat(line, n, sizeof(line) - 1,
		", so the dynamic loader would drop the llmcap library and it would run without limits\n");
	if (n == sizeof(line) - 1)
		line[n - 1] = '\n';
	(void)!syscall(SYS_write, 2, line, n);
}

/* 0 go ahead, else EPERM (the line is printed) */
static int check_at(int dirfd, const char *path, int flags, char *const envp[])
{
	const char *why;
	int saved = errno;

	if (!env_has_shim(envp))
		return 0;
	why = lc_secure_exec_reason_at(dirfd, path, flags);
	errno = saved;
	if (!why)
		return 0;
	say_refused(path && path[0] ? path : "(fd)", why);
	return EPERM;
}

/* The file execvp/posix_spawnp would run (first executable regular file on PATH), checked. */
static int check_path_search(const char *file, char *const envp[])
{
	const char *path, *p;
	char cand[PATH_MAX];
	int saved = errno;

	if (!file || !file[0] || !env_has_shim(envp))
		return 0;
	if (strchr(file, '/'))
		return check_at(AT_FDCWD, file, 0, envp);
	path = getenv("PATH");
	if (!path)
		path = "/bin:/usr/bin";
	for (p = path;;) {
		const char *e = strchr(p, ':');
		size_t dl = e ? (size_t)(e - p) : strlen(p), fl = strlen(file);
		struct stat st;

		if (dl + fl + 3 <= sizeof(cand)) {
			size_t off = 0;

			if (dl == 0) {
				cand[off++] = '.';
			} else {
				memcpy(cand, p, dl);
				off = dl;
			}
			cand[off++] = '/';
			memcpy(cand + off, file, fl + 1);
			if (access(cand, X_OK) == 0 && stat(cand, &st) == 0 && S_ISREG(st.st_mode)) {
				errno = saved;
				return check_at(AT_FDCWD, cand, 0, envp);
			}
		}
		if (!e)
			break;
		p = e + 1;
	}
	errno = saved;
	return 0;
}

LC_EXPORT int execve(const char *path, char *const argv[], char *const envp[])
{
	int e = check_at(AT_FDCWD, path, 0, envp);

	if (e) {
		errno = e;
		return -1;
	}
	if (!REAL(execve))
		return (int)syscall(SYS_execve, path, argv, envp);
	return r_execve(path, argv, envp);
}

LC_EXPORT int execv(const char *path, char *const argv[])
{
	int e = check_at(AT_FDCWD, path, 0, environ);

	if (e) {
		errno = e;
		return -1;
	}
	if (!REAL(execv))
		return (int)syscall(SYS_execve, path, argv, environ);
	return r_execv(path, argv);
}

LC_EXPORT int execvp(const char *file, char *const argv[])
{
	int e = check_path_search(file, environ);

	if (e) {
		errno = e;
		return -1;
	}
	if (!REAL(execvp)) {
		errno = ENOSYS;
		return -1;
	}
	return r_execvp(file, argv);
}

LC_EXPORT int execvpe(const char *file, char *const argv[], char *const envp[])
{
	int e = check_path_search(file, envp);

	if (e) {
		errno = e;
		return -1;
	}
	if (!REAL(execvpe)) {
		errno = ENOSYS;
		return -1;
	}
	return r_execvpe(file, argv, envp);
}

LC_EXPORT int execveat(int dirfd, const char *path, char *const argv[], char *const envp[], int flags)
{
	int e = check_at(dirfd, path, flags, envp);

	if (e) {
		errno = e;
		return -1;
	}
	if (!REAL(execveat))
		return (int)syscall(SYS_execveat, dirfd, path, argv, envp, flags);
	return r_execveat(dirfd, path, argv, envp, flags);
}

/* posix_spawn returns the error number (errno untouched) */
LC_EXPORT int posix_spawn(pid_t *pid, const char *path, const posix_spawn_file_actions_t *fa,
			  const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	int saved = errno, e = check_at(AT_FDCWD, path, 0, envp ? envp : environ);

	errno = saved;
	if (e)
		return e;
	if (!REAL(posix_spawn))
		return ENOSYS;
	return r_posix_spawn(pid, path, fa, attr, argv, envp);
}

LC_EXPORT int posix_spawnp(pid_t *pid, const char *file, const posix_spawn_file_actions_t *fa,
			   const posix_spawnattr_t *attr, char *const argv[], char *const envp[])
{
	int saved = errno, e = check_path_search(file, envp ? envp : environ);

	errno = saved;
	if (e)
		return e;
	if (!REAL(posix_spawnp))
		return ENOSYS;
	return r_posix_spawnp(pid, file, fa, attr, argv, envp);
}
