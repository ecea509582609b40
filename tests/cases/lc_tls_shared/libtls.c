/*
 * LibCare's tls_shared shape: a file-static thread-local of a shared
 * library in the initial-exec model. gcc reaches it through a GOT slot that
 * the dynamic linker fills from an R_X86_64_TPOFF64 with symbol index 0
 * (the offset is in the addend); the patch must find that slot.
 */
#include <stdio.h>

static __thread int tls_abc __attribute__((tls_model("initial-exec"))) = 10;

__attribute__((noipa)) void print_second_greetings(void)
{
	tls_abc = 10;
	printf("Hello from UNPATCHED shared library\n");
}

__attribute__((noipa)) void print_third_greetings(void)
{
	printf("Hello from PATCHED shared library, tls_abc=%d\n", tls_abc);
}

void print_greetings(void)
{
	print_second_greetings();
}
