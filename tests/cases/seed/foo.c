#include <stdio.h>
#include <unistd.h>

void i_m_being_patched(void)
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
