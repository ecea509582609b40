/* A thread-local the executable reaches across objects (initial-exec TLS). */
__thread int lib_counter = 40;

int lib_get(void)
{
	return lib_counter;
}
