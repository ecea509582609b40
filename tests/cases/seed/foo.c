#include <stdio.h>
#include <unistd.h>

/*
 * noipa: at -O2 gcc would inline this into main(), which never returns, and
 * no live patch can switch a function that is always running. Real targets
 * of live patches are called functions; this keeps the seed's example one.
 */
__attribute__((noipa)) void i_m_being_patched(void)
{
	printf("i'm unpatched!\n");
}

int main(void)
{
	while (1) {
		i_m_being_patched();
		sleep(1);
	}
}
