#include <cstdio>
#include <cstring>
#include <stdexcept>
#include <string>
#include <unistd.h>

/*
 * Exceptions through patch code. `fail` (never patched) throws. The fix
 * changes `guarded`, which catches what `fail` throws inside itself, and
 * `relay`, which lets it pass through to the unpatched `main`'s catch. In
 * both the patient's own unwinder (libgcc) must find the patch code's
 * frames, or the process terminates.
 */
__attribute__((noipa)) void fail(const std::string &why)
{
	throw std::runtime_error(why);
}

__attribute__((noipa)) int guarded(void)
{
	std::string tag("old");
	try {
		fail(tag + "-guarded");
	} catch (const std::exception &e) {
		return (int)std::strlen(e.what());
	}
	return 0;
}

__attribute__((noipa)) void relay(void)
{
	std::string tag("old");
	fail(tag + "-relay");
}

int main(void)
{
	for (;;) {
		int n = guarded();
		try {
			relay();
		} catch (const std::exception &e) {
			std::printf("%d %s\n", n, e.what());
		}
		usleep(1000000);
	}
}
