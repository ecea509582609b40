/* The host loads its handler from a plugin with dlopen after start-up and
 * calls it through the function pointer the plugin handed over. */
#include <dlfcn.h>
#include <stdio.h>
#include <unistd.h>

struct plugin_ops {
	int (*handle)(int value, char *out, int n);
};

int main(void)
{
	void *h = dlopen("libplugin.so", RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		printf("dlopen: %s\n", dlerror());
		return 1;
	}
	const struct plugin_ops *(*init)(void) =
		(const struct plugin_ops *(*)(void))dlsym(h, "plugin_init");
	const struct plugin_ops *ops = init();
	char out[64];
	for (;;) {
		ops->handle(-7, out, sizeof out);
		puts(out);
		fflush(stdout);
		usleep(1000000);
	}
}
