#include <stdio.h>

struct plugin_ops {
	int (*handle)(int value, char *out, int n);
};

static int handle(int value, char *out, int n)
{
	return snprintf(out, n, "plugin: value %d", value);
}

static const struct plugin_ops ops = { handle };

const struct plugin_ops *plugin_init(void)
{
	return &ops;
}
