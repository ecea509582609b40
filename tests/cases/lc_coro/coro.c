/*
 * Two coroutines on stacks of the program's own making, as LibCare's
 * fail_coro tests and QEMU have them:
 * - `a` is created with makecontext and then switched with
 *   sigsetjmp/siglongjmp (QEMU's coroutine-ucontext shape), so its
 *   suspended state is a jmp_buf with mangled registers;
 * - `b` is switched with swapcontext both ways, so its suspended state is a
 *   ucontext_t.
 * Each runs its body once per line and suspends inside it: body_a and
 * body_b are always on a stack no thread is on, say() never is.
 */
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <unistd.h>

#define STACK_SIZE (64 * 1024)

static char line[256];

static sigjmp_buf a_env, a_caller, a_start;
static ucontext_t main_uc, b_uc;

__attribute__((noipa)) void say(const char *who)
{
	size_t n = strlen(line);

	snprintf(line + n, sizeof(line) - n, "%sHello from UNPATCHED %s",
		 n ? " / " : "", who);
}

__attribute__((noipa)) void body_a(void)
{
	for (;;) {
		say("a");
		if (!sigsetjmp(a_env, 0))
			siglongjmp(a_caller, 1);
	}
}

static void trampoline_a(void)
{
	if (!sigsetjmp(a_env, 0))
		siglongjmp(a_start, 1);
	body_a();
}

__attribute__((noipa)) void body_b(void)
{
	for (;;) {
		say("b");
		swapcontext(&b_uc, &main_uc);
	}
}

static void make(ucontext_t *uc, ucontext_t *link, void (*fn)(void))
{
	getcontext(uc);
	uc->uc_stack.ss_sp = malloc(STACK_SIZE);
	uc->uc_stack.ss_size = STACK_SIZE;
	uc->uc_link = link;
	makecontext(uc, fn, 0);
}

int main(void)
{
	ucontext_t a_uc, old_uc;

	make(&a_uc, &old_uc, trampoline_a);
	if (!sigsetjmp(a_start, 0))
		swapcontext(&old_uc, &a_uc);
	make(&b_uc, &main_uc, body_b);

	for (;;) {
		line[0] = '\0';
		if (!sigsetjmp(a_caller, 0))
			siglongjmp(a_env, 1);
		swapcontext(&main_uc, &b_uc);
		puts(line);
		fflush(stdout);
		sleep(1);
	}
}
