#include <cstdio>
#include <stdexcept>
#include <unistd.h>

/*
 * The patched function never returns, so the patch is refused at its
 * timeout, after its unwind table was registered with libgcc: the rollback
 * must take the table back before unmapping the region, or the next throw
 * (every line here) reads freed memory and the process dies.
 */
__attribute__((noipa)) void fail(void)
{
	throw std::runtime_error("bad");
}

__attribute__((noipa)) void spin(void)
{
	for (;;) {
		try {
			fail();
		} catch (const std::exception &e) {
			std::printf("caught %s\n", e.what());
		}
		usleep(1000000);
	}
}

int main(void)
{
	spin();
}
