/*
 * LibCare's ref_rodata shape: the patched function reads a file-static
 * pointer of .data (to a string of .rodata). In LibCare's order of the
 * recipe (strip --strip-unneeded before --rel-fixup) the section symbol of
 * .data is gone by the time the relocation to `msg` is fixed up.
 */
#include <stdio.h>
#include <unistd.h>

static char *msg = "UNPATCHED binary!!!";

__attribute__((noipa)) char *get_msg(void)
{
	return msg;
}

void print_greetings(void)
{
	printf("Hello. This is a '%s'\n", get_msg());
}

int main(void)
{
	while (1) {
		print_greetings();
		sleep(1);
	}
	return 0;
}
