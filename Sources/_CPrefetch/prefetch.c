// prefetch.h is all static inline; SwiftPM needs one source file to build the target.
#include "prefetch.h"
