// The one translation unit that compiles Boost.Beast itself (BOOST_BEAST_SEPARATE_COMPILATION);
// every other gateway file that includes Beast sees declarations only.
#include <boost/beast/src.hpp>
