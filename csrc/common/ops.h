// Op codes shared by the CPU and CUDA backends and python/kernelnet/_ops.py. Append only: the
// numbers cross the Python boundary.
#pragma once

namespace kn {

enum BinaryOp : int {
  B_ADD = 0, B_SUB = 1, B_MUL = 2, B_DIV = 3, B_POW = 4, B_MAX = 5, B_MIN = 6,
  // comparisons write bool (uint8 0/1)
  B_EQ = 7, B_NE = 8, B_LT = 9, B_LE = 10, B_GT = 11, B_GE = 12,
  // logical ops on bool inputs
  B_AND = 13, B_OR = 14, B_XOR = 15,
  // PyTorch's fmod (sign of a), remainder (sign of b) and floor division, on floats computed from
  // fmod as PyTorch does (floor(a / b) is off by one near integers: 1.0 // 0.1 gives 10, not 9);
  // on int64 exact, with a zero divisor giving 0 (the Python layer raises first)
  B_FMOD = 16, B_REMAINDER = 17, B_FLOOR_DIV = 18,
  // bitwise ops on int64 (bool uses the logical ops; floats are refused by the Python layer)
  B_BIT_AND = 19, B_BIT_OR = 20, B_BIT_XOR = 21,
};
constexpr bool is_compare(int op) { return op >= B_EQ && op <= B_XOR; }
constexpr int kLastBinaryOp = B_BIT_XOR;

enum UnaryOp : int {
  U_NEG = 0, U_EXP = 1, U_LOG = 2, U_TANH = 3, U_SIGMOID = 4, U_RELU = 5, U_SQRT = 6,
  U_ABS = 7, U_POWS = 8 /* x^p0 */, U_CLAMP = 9 /* clamp(x, p0, p1) */, U_SIGN = 10,
  U_RSQRT = 11, U_SIN = 12, U_COS = 13, U_LEAKY_RELU = 14 /* slope p0 */, U_ELU = 15 /* alpha p0 */,
  U_GELU = 16 /* erf form */, U_GELU_TANH = 17, U_RECIP = 18, U_SQUARE = 19, U_LOG1P = 20,
  U_EXPM1 = 21, U_FLOOR = 22, U_CEIL = 23, U_ROUND = 24, U_NOT = 25 /* bool */,
  U_SOFTPLUS = 26 /* beta p0, threshold p1 */, U_SILU = 27, U_ERF = 28,
};

enum ReduceOp : int { R_SUM = 0, R_MEAN = 1, R_MAX = 2, R_MIN = 3, R_ARGMAX = 4, R_ARGMIN = 5, R_PROD = 6, R_ANY = 7, R_ALL = 8 };

enum BiasMode : int { BIAS_NONE = 0, BIAS_COL = 1 /* bias[n], like Linear */, BIAS_ROW = 2 /* bias[m], like conv */ };
enum Activation : int { ACT_NONE = 0, ACT_RELU = 1 };

}  // namespace kn
