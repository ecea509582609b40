#include <string>

struct Shape {
	virtual ~Shape() {}
	virtual long area() const = 0;
};

struct Rect : Shape {
	long w, h;
	Rect(long w, long h) : w(w), h(h) {}
	long area() const override;
};

template <typename T> T clamp_to(T v, T lo, T hi)
{
	return v < lo ? lo : (v > hi ? hi : v);
}

std::string describe(const Shape &s);
