#include "shapes.h"

long Rect::area() const
{
	return w * h;
}

std::string describe(const Shape &s)
{
	return "area " + std::to_string(clamp_to<long>(s.area(), 0, 1000));
}
