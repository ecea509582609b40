#include <cstdio>
#include <stdexcept>
#include <thread>
#include <unistd.h>

/*
 * The main thread computes without ever making a system call; a second
 * thread throws through the patched `relay` once a second. Calls into the
 * patient (registering the patch's unwind table) must run in the thread
 * that sits in a system call, never in one stopped halfway through its
 * own work.
 */
static volatile unsigned long spins;

__attribute__((noipa)) void fail(const char *why)
{
	throw std::runtime_error(why);
}

__attribute__((noipa)) void relay(void)
{
	fail("old");
}

static void worker(void)
{
	for (;;) {
		try {
			relay();
		} catch (const std::exception &e) {
			std::printf("caught %s\n", e.what());
		}
		usleep(1000000);
	}
}

int main(void)
{
	std::thread t(worker);
	for (;;)
		spins++;
}
