#include <stdio.h>
#include <unistd.h>

int quota_ok(long used, long limit);

int main(void)
{
	for (;;) {
		printf("quota(-1, 10) ok=%d quota(10, 10) ok=%d\n", quota_ok(-1, 10), quota_ok(10, 10));
		fflush(stdout);
		usleep(1000000);
	}
}
