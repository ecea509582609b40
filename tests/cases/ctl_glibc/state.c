#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/*
 * State of every kind the patched function keeps using: a global, a
 * file-static, a static local and a thread-local variable of the original.
 * The patch must reach these very objects (their values continue across the
 * switch), call glibc (IFUNC strlen/memcpy among them), use stdout, stderr,
 * environ and errno, add a function and a zero-initialised variable, and be
 * reached through a function pointer taken before it was applied.
 */
int global_count;
static int file_static = 100;
__thread int tls_count;

__attribute__((noipa)) void report(void)
{
	static int local_static = 1000;

	global_count++;
	file_static++;
	local_static++;
	tls_count++;
	fflush(stderr);
	fprintf(stdout, "old %d %d %d %d %d\n", global_count, file_static, local_static,
		tls_count, environ != NULL);
}

void (*volatile hook)(void) = report;

int main(void)
{
	for (;;) {
		hook();
		sleep(1);
	}
}
