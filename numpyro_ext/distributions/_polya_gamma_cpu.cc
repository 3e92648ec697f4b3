// Exact Polya-gamma draws on CPU as an XLA FFI custom call.
//
// PG(b, c) = J*(b, |c| / 2) / 4 is drawn as the sum of m = ceil(b / 2) independent J*(h, z)
// pieces, h = b / m in (0, 2], each by the series method (Devroye 1986, ch. IV.5): the same
// envelopes and acceptance ratios as numpyro_ext/distributions/polya_gamma_sampler.py (the
// reference implementation), evaluated per element with real branches instead of masks, and
// with the alternating series stopped as soon as its partial sums decide the test.
//
// Inputs: seed (uint32, rows of 2), z = |c| / 2 and b (float32 or float64) with as many rows as
// seed; every row draws from its own xoshiro256++ stream seeded by its two words.

#include <Python.h>

#include <cmath>
#include <cstdint>
#include <limits>

#include "xla/ffi/api/ffi.h"

namespace ffi = xla::ffi;

namespace {

constexpr double kPi = 3.14159265358979323846;
constexpr double kHalfPiSq = kPi * kPi / 8.0;
constexpr double kDevroyeT = 0.64;
constexpr int kLeftTerms = 8;
constexpr int kTailTerms = 28;
constexpr int kMaxProposals = 1000;  // per piece; the expected count is below 1.5

// ---------------------------------------------------------------------------------------------
// Random numbers: xoshiro256++ (Blackman & Vigna 2019) seeded through splitmix64.

class Rng {
 public:
  explicit Rng(uint64_t seed) {
    for (auto& word : s_) word = SplitMix(seed);
  }

  uint64_t Next() {
    const uint64_t result = Rotl(s_[0] + s_[3], 23) + s_[0];
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = Rotl(s_[3], 45);
    return result;
  }

  // Uniform on the open interval (0, 1).
  double Uniform() {
    return (static_cast<double>(static_cast<int64_t>(Next() >> 11)) + 0.5) * 0x1.0p-53;
  }

  double Exponential() { return -std::log(Uniform()); }

  // Standard normal by Marsaglia's polar method (the second variate of a pair is kept).
  double Normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u, v, s;
    do {
      u = 2.0 * Uniform() - 1.0;
      v = 2.0 * Uniform() - 1.0;
      s = u * u + v * v;
    } while (s >= 1.0 || s == 0.0);
    const double f = std::sqrt(-2.0 * std::log(s) / s);
    spare_ = v * f;
    has_spare_ = true;
    return u * f;
  }

  // N^2 for N standard normal conditioned on |N| > a.
  double NormalTailSquared(double a) {
    if (a < 1.0) {
      for (;;) {
        const double n = Normal();
        if (n * n > a * a) return n * n;
      }
    }
    // Marsaglia (1964): |N| = sqrt(a^2 + 2E) accepted with probability a / |N|, i.e. squared,
    // N^2 = a^2 + 2E accepted when U^2 N^2 <= a^2.
    for (;;) {
      const double n2 = a * a + 2.0 * Exponential();
      const double u = Uniform();
      if (u * u * n2 <= a * a) return n2;
    }
  }

 private:
  static uint64_t Rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t SplitMix(uint64_t& state) {
    uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  uint64_t s_[4];
  double spare_ = 0.0;
  bool has_spare_ = false;
};

// ---------------------------------------------------------------------------------------------
// Tail form of the J*(h) density: rho_h(x) = sum_j P_j(h) y^j, y = 2 / (pi^2 x).

struct MomentPolynomials {
  double a[kTailTerms][kTailTerms] = {};

  MomentPolynomials() {
    // Cumulants kappa_i = (i - 1)! T_i of u = sum_{k >= 2} g_k / (k (k - 1)), T_1 = 1.
    double power_sums[kTailTerms] = {};
    for (int k = 200000; k >= 2; --k) {
      const double base = 1.0 / (static_cast<double>(k) * (k - 1.0));
      double p = base;
      for (int i = 0; i < kTailTerms; ++i) {
        power_sums[i] += p;
        p *= base;
      }
    }
    power_sums[0] = 1.0;
    double kappa[kTailTerms] = {};
    double factorial = 1.0;
    for (int i = 1; i < kTailTerms; ++i) {
      kappa[i - 1] = factorial * power_sums[i - 1];
      factorial *= i;
    }
    a[0][0] = 1.0;
    for (int j = 1; j < kTailTerms; ++j) {
      for (int i = 1; i <= j; ++i) {
        const double binom = std::exp(std::lgamma(j) - std::lgamma(i) - std::lgamma(j - i + 1.0));
        for (int d = 1; d < kTailTerms; ++d) {
          a[j][d] += std::round(binom) * kappa[i - 1] * a[j - i][d - 1];
        }
      }
    }
  }
};

const MomentPolynomials& Moments() {
  static const MomentPolynomials moments;
  return moments;
}

// Everything that depends on the piece shape h alone.
struct Shape {
  double h = std::numeric_limits<double>::quiet_NaN();
  double t, bound, log_right_h, levy_a, log_levy;
  // Lower bounds of the acceptance ratios that need no exponential (squeezes): the left series
  // is at least 1 - c_1 q^(1+h) with q = exp(-2/x) <= exp(-2/t); Devroye's right series is at
  // least 1 - 3 exp(-pi^2 x) >= 1 - 3 exp(-pi^2 t).
  double left_squeeze, right_squeeze;
  double left[kLeftTerms];  // left-series coefficients relative to the first term
  double tail[kTailTerms];  // P_j(h)

  double TailFactor(double x) const {
    const double y = 2.0 / (kPi * kPi * x);
    double total = tail[kTailTerms - 1];
    for (int j = kTailTerms - 2; j >= 0; --j) total = total * y + tail[j];
    return total;
  }

  void Set(double shape) {
    h = shape;
    t = h == 1.0 ? kDevroyeT : std::fmin(2.0 * (h + 1.0) / std::log(2.0 + h), 3.0);
    for (int n = 0; n < kLeftTerms; ++n) {
      left[n] = std::exp(std::lgamma(n + h) - std::lgamma(h) - std::lgamma(n + 1.0) +
                         std::log((2.0 * n + h) / h));
    }
    const auto& a = Moments().a;
    double sign = 1.0;
    for (int j = 0; j < kTailTerms; ++j) {
      if (j > 0) sign *= ((j - 1.0) - (h - 1.0)) / j;
      double moment = a[j][kTailTerms - 1];
      for (int d = kTailTerms - 2; d >= 0; --d) moment = moment * h + a[j][d];
      tail[j] = sign * moment;
    }
    bound = h < 1.0 ? TailFactor(t) : 1.0;
    if (h == 1.0) bound = 1.0;
    log_right_h = h * std::log(kPi / 2.0) + std::log(bound) - std::lgamma(h) + (h - 1.0) * std::log(t);
    left_squeeze = std::fmax(1.0 - left[1] * std::exp(-2.0 * (1.0 + h) / t), 0.0);
    right_squeeze = h == 1.0 ? 1.0 - 3.0 * std::exp(-kPi * kPi * t) : 0.0;
    levy_a = h / std::sqrt(t);
    log_levy = (h + 1.0) * std::log(2.0) + std::log(0.5 * std::erfc(levy_a / std::sqrt(2.0)));
  }
};

// Alternating series test: accept iff w <= 1 - c_1 q_1 + c_2 q_2 - ..., the terms decreasing,
// so the partial sums bracket the limit and usually decide after one or two terms.
bool AcceptLeft(double x, double w, const Shape& s) {
  const double q = std::exp(-2.0 / x);
  const double qh = s.h == 1.0 ? q : std::exp(-2.0 * s.h / x);
  double total = 1.0, power = 1.0, odd = q;
  for (int n = 1; n < kLeftTerms; ++n) {
    power *= odd * qh;
    odd *= q * q;
    if (n % 2 == 1) {
      total -= s.left[n] * power;
      if (w <= total) return true;
    } else {
      total += s.left[n] * power;
      if (w > total) return false;
    }
  }
  return w <= total;
}

// Devroye's right series for h = 1, relative to its first term: 1 - 3 e^{-pi^2 x} + 5 e^{-3 pi^2 x}.
bool AcceptDevroyeRight(double x, double u) {
  const double e = std::exp(-kPi * kPi * x);
  double total = 1.0 - 3.0 * e;
  if (u <= total) return true;
  const double e2 = e * e;
  total += 5.0 * e2 * e;
  if (u > total) return false;
  total -= 7.0 * e2 * e2 * e2;
  return u <= total;
}

// The envelope's constants for one tilt z (shared by every piece of an element).
struct Tilt {
  double z, lam, lam_right, p_left, mu;
  bool use_ig;

  Tilt(const Shape& s, double tilt) : z(tilt) {
    const double h = s.h;
    lam = kHalfPiSq + 0.5 * z * z;
    lam_right = lam - std::fmax(h - 1.0, 0.0) / s.t;
    const double log_ig = h * std::log(2.0) - h * z;
    use_ig = (log_ig < s.log_levy) && (z > 0.0);
    const double log_left = use_ig ? log_ig : s.log_levy;
    // right mass / left mass = exp(log_right_h - lam t - log_left) / lam_right
    p_left = 1.0 / (1.0 + std::exp(s.log_right_h - lam * s.t - log_left) / lam_right);
    mu = use_ig ? h / z : 0.0;
  }
};

// One draw of J*(h, z).
double SamplePiece(Rng& rng, const Shape& s, const Tilt& e) {
  const double h = s.h, t = s.t, z = e.z, lam = e.lam, lam_right = e.lam_right;
  const double p_left = e.p_left, mu = e.mu;
  const bool use_ig = e.use_ig;
  for (int i = 0; i < kMaxProposals; ++i) {
    if (rng.Uniform() < p_left) {
      double x, a = 0.0;  // a: minus the log of the tilt left out of the proposal
      if (use_ig) {
        // Inverse Gaussian IG(h / z, h^2) (Michael, Schucany & Haas 1976), cancellation-free.
        const double n = rng.Normal();
        const double r = mu * n * n / (2.0 * h * h);
        const double small = mu / (1.0 + r + std::sqrt(r * (r + 2.0)));
        x = rng.Uniform() * (mu + small) <= mu ? small : mu * mu / small;
        if (!(x <= t)) continue;
      } else {
        // Levy kernel truncated to x < t: x = h^2 / N^2 with |N| > h / sqrt(t).
        x = h * h / rng.NormalTailSquared(s.levy_a);
        a = 0.5 * z * z * x;
      }
      if (!(x > 0.0)) continue;
      const double u = rng.Uniform();
      // Squeeze first (exp(-a) >= 1 - a), then the series test of u <= exp(-a) * ratio.
      if (u <= std::fmax(1.0 - a, 0.0) * s.left_squeeze) return x;
      if (AcceptLeft(x, a == 0.0 ? u : u * std::exp(a), s)) return x;
    } else {
      const double x = t + rng.Exponential() / lam_right;
      if (!std::isfinite(x)) continue;
      const double u = rng.Uniform();
      if (h == 1.0) {
        if (u <= s.right_squeeze || AcceptDevroyeRight(x, u)) return x;
      } else {
        const double shape = std::exp((h - 1.0) * std::log(x / t) - (lam - lam_right) * (x - t));
        if (u <= shape * s.TailFactor(x) / s.bound) return x;
      }
    }
  }
  return std::numeric_limits<double>::quiet_NaN();
}

template <typename T>
void SampleRow(uint64_t seed, const T* b, const T* z, T* out, size_t n) {
  Rng rng(seed);
  Shape shape;
  for (size_t i = 0; i < n; ++i) {
    const double bi = static_cast<double>(b[i]);
    const double zi = static_cast<double>(z[i]);
    if (!(bi > 0.0) || !std::isfinite(bi) || !std::isfinite(zi)) {
      out[i] = std::numeric_limits<T>::quiet_NaN();
      continue;
    }
    const double pieces = std::ceil(bi / 2.0);
    const double h = bi / pieces;
    if (h != shape.h) shape.Set(h);
    const Tilt tilt(shape, zi);
    double total = 0.0;
    for (double k = 0; k < pieces; k += 1.0) total += SamplePiece(rng, shape, tilt);
    out[i] = static_cast<T>(total);  // J* scale; the caller divides by 4
  }
}

template <ffi::DataType D>
ffi::Error Sample(ffi::Buffer<ffi::U32> seed, ffi::Buffer<D> b, ffi::Buffer<D> z,
                  ffi::ResultBuffer<D> out) {
  const size_t rows = seed.element_count() / 2;
  const size_t size = b.element_count();
  if (rows == 0 || size % rows != 0 || z.element_count() != size) {
    return ffi::Error::InvalidArgument("polya_gamma_cpu: seed rows do not divide b and z");
  }
  const size_t per_row = size / rows;
  const uint32_t* words = seed.typed_data();
  for (size_t r = 0; r < rows; ++r) {
    const uint64_t s = (static_cast<uint64_t>(words[2 * r]) << 32) | words[2 * r + 1];
    SampleRow(s, b.typed_data() + r * per_row, z.typed_data() + r * per_row,
              out->typed_data() + r * per_row, per_row);
  }
  return ffi::Error::Success();
}

}  // namespace

XLA_FFI_DEFINE_HANDLER_SYMBOL(PolyaGammaF32, Sample<ffi::F32>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Arg<ffi::Buffer<ffi::F32>>()
                                  .Ret<ffi::Buffer<ffi::F32>>());

XLA_FFI_DEFINE_HANDLER_SYMBOL(PolyaGammaF64, Sample<ffi::F64>,
                              ffi::Ffi::Bind()
                                  .Arg<ffi::Buffer<ffi::U32>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Arg<ffi::Buffer<ffi::F64>>()
                                  .Ret<ffi::Buffer<ffi::F64>>());

// Python module: each function returns the handler as a capsule for jax.ffi.register_ffi_target.
static PyObject* Capsule(void* fn) { return PyCapsule_New(fn, nullptr, nullptr); }
static PyObject* HandlerF32(PyObject*, PyObject*) {
  return Capsule(reinterpret_cast<void*>(PolyaGammaF32));
}
static PyObject* HandlerF64(PyObject*, PyObject*) {
  return Capsule(reinterpret_cast<void*>(PolyaGammaF64));
}

static PyMethodDef kMethods[] = {
    {"handler_f32", HandlerF32, METH_NOARGS, "FFI handler for float32 draws."},
    {"handler_f64", HandlerF64, METH_NOARGS, "FFI handler for float64 draws."},
    {nullptr, nullptr, 0, nullptr}};

static PyModuleDef kModule = {PyModuleDef_HEAD_INIT, "_polya_gamma_cpu",
                              "Exact Polya-gamma draws on CPU (XLA FFI handlers).", -1, kMethods};

PyMODINIT_FUNC PyInit__polya_gamma_cpu(void) { return PyModule_Create(&kModule); }
