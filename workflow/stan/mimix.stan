// MIMIX (Grantham, Reich, Borer & Gross, arXiv:1703.07747, Sec. 2).
//
// Model (paper's notation; the paper writes sigma2 for variances):
//   Y_i ~ Multinomial(m_i, softmax(theta_i))                             [likelihood]
//   theta_ik ~ N(mu_k + (Lambda' f_i)_k, sigma2_k), sigma2_k ~ InvGamma(1, 1)
//   mu_k ~ N(0, sigma2_mu), sigma2_mu ~ InvGamma(1, 1)
//   f_i ~ N_L(b x_i + sum_q g[., block[i, q]], I)
//   g_(l,r) ~ N(0, sigma2_g[factor of r]), sigma2_g ~ InvGamma(1, 1)
//   b = omega .* b_tilde, b_tilde_lj ~ N(0, sigma2_b[j]), sigma2_b ~ InvGamma(1, 1)
//   omega_lj ~ Bernoulli(pi_j), pi_j ~ Beta(1, L)
//   Lambda_lk ~ N(0, psi_lk xi_lk^2 tau_l^2), psi_lk ~ Exponential(mean 2)     [Dirichlet-Laplace]
//   xi_l ~ Dirichlet(a_l, ..., a_l), tau_l ~ Gamma(K a_l, rate nu), nu ~ Gamma(1, 1)
//   a_l uniform on the grid a_grid (0.01, ..., 0.50)
//   Treatment effect on taxa: beta = Lambda' b (K x P).
//
// Parametrization (why):
// * omega AND b_tilde are integrated out exactly, per factor row l, over the 2^P inclusion
//   patterns s: given s, column l of F - (block effects) is Gaussian with covariance
//   I + X_s diag(sigma2_b[s]) X_s', evaluated with the sufficient statistics X'X and X'(F - G)
//   (one P x P eigendecomposition per pattern, never an N x N matrix). F stays explicit (the exact
//   marginalization needs it) and centred. omega and b are drawn from their exact conditionals in
//   generated quantities, so incl_prob is Rao-Blackwellized over b_tilde as well.
// * Blocking effects in the factor layer are hierarchically centred along nested factors
//   (parameter h[r] = mean of level r, a nested level centred on its parent's mean); gamma = h -
//   (parent mean) is unit-triangular (Jacobian 1), so the prior is stated on g exactly as in the
//   paper. In the no-factor prototype this cut leapfrog steps 511 -> 255.
// * Dirichlet-Laplace scales: xi_l * tau_l = phi_l with phi_lk ~ Gamma(a_l, rate nu) independently
//   (normalized gammas, exact), so no simplex is needed; a_l is summed out over the grid with
//   log_sum_exp (sum_k log Gamma(phi_lk | a, nu) needs only sum_k log phi_lk and sum_k phi_lk).
// * Loadings are adaptively centred: with s = sqrt(psi) phi (the prior sd of Lambda_lk) and
//   c = c_Lambda = 0.25 / sqrt(N), Lambda = z g(s), g(s) = s / sqrt(1 + (s / c)^2), so
//   z ~ N(0, (s / g(s))^2) exactly. A cell the prior shrinks (s << c) is non-centred (z ~ N(0, 1),
//   Lambda = z s); a cell the data resolve (s >> c) is centred (z = Lambda / c). Why: under the DL
//   prior most cells are shrunk far below what the data resolve (non-centring needed), but the few
//   large ones, and the small ones whose scale wanders, are pinned by the data while z = Lambda / s
//   moves with s: a ridge that set the step. A Lanczos look at the metric-scaled Hessian of the
//   non-centred form (NutNet-100) found its four stiffest directions each on one loading cell
//   (eigenvalues 18,000-25,000, leapfrog limit 0.0125). Centring whole taxa instead (the 53 with
//   prevalence >= 0.9) made the step 8 times smaller: which cells are large is a property of the
//   posterior, so the switch must follow s, as g does. c ~ the precision sqrt(sigma2_k / N) with which
//   the data resolve a loading; c = 0.02 (N = 166) was measured, c = sqrt(sigma2_k / N) with the
//   parameter sigma2_k was worse (step 0.010, 511 leapfrog steps). Measured below.
// * theta is sampled as theta_free: each sample's log-ratios to its reference taxon (its most
//   abundant one), with theta_i's level c_i integrated out exactly: the likelihood does not depend
//   on c_i, and integrating N(theta_i + c_i 1 | m_i, diag(sigma2)) over c_i gives a closed form
//   (normal_rows_level_free_lpdf). Same posterior for every other quantity. Why: with theta
//   explicit, beta's common level per treatment (a constant added to every taxon's effect) is
//   set only by the priors and moving it meant moving every theta cell of the treated samples
//   together; on NutNet-100 (Gaussian loadings, L = 10, 2 chains x 500 draws) the nutrient
//   column of beta averaged over taxa sat at -0.012 in one chain and +0.052 in the other.
// * Not adopted here (adopted in mimix_gaussian.stan): F and h scaled by the loading row scale
//   tau_l = sum_k phi_lk. With it (and theta_free) on NutNet-100, L = 10, 2 chains x (300 + 500),
//   max depth 10: step 0.0035-0.0045, 930-980 leapfrog steps, 48 and 90 divergences, max R-hat
//   1.65 (beta), 1.33 (global_prob): worse than without (bench/geometry-log.md, session 5).
// * The theta prior and the likelihood are each one whole-matrix expression
//   (normal_rows_level_free_lpdf: column sums of squares and row sums; multinomial_logit_rows:
//   y'theta over the nonzero counts only, one log_sum_exp per sample) instead of K normal and N
//   multinomial_logit statements: fewer autodiff nodes. mimix_gaussian on NutNet-408 (K = 409)
//   went from 14.1 to 10.6 ms per gradient with the column-sum form (two 40-iteration chains side
//   by side, identical 2,334 leapfrog steps; bench/geometry-log.md, session 5).
// Measured on NutNet-100 (N = 166, K = 101, P = 3, site + block nested; L = 10; PyStan 3.10; adapt_delta
// 0.9, max tree depth 10; SVD inits; bench/geometry-log.md, sessions 5-6):
//   non-centred loadings, 2 chains x (200 + 300): step 0.0039-0.0046, 964-981 leapfrog steps (depth 10
//     on 261-275 of 300 draws), 25-39 divergences, 714-719 s per chain; max R-hat beta 1.56
//   this file (adaptive centring), 2 chains x (500 + 1000): step 0.0123-0.0129, 255 leapfrog steps in
//     chain 1 (3 divergences), 255-1,023 (mean 502, 30 divergences) in chain 2, 2.2-3.3 ms per gradient;
//     max R-hat / min bulk ESS: beta 1.56 / 3.5, lambda_diag 1.69 / 3.2, global_prob 1.09 / 16.
//   Gaussian loadings (mimix_gaussian): step 0.010-0.016, 255-511 leapfrog steps, 0 divergences.
// Adaptive centring removed the stiffness (a 2-4x larger step, 2-4x shorter trajectories) but not
// the slow collective modes: lambda_diag, eta and beta still drift over 1,000 draws (for one taxon
// lambda_diag went from 1.03 to 1.73 within a chain). The Dirichlet-Laplace model does not converge on
// NutNet in hours yet; mimix_gaussian (whose row scale is one coordinate, F scaled by it) does nearly.
//
// Limit: P <= P_MAX = 6 treatment columns (2^6 = 64 inclusion patterns per factor row).
functions {
  // sum_i log of the integral over c_i of prod_k N(resid_ik + c_i | 0, sigma2_k): the normal
  // density of each row of resid with the row's level integrated out (see header), up to a constant:
  //   -0.5 [sum_k w_k e_ik^2 - (sum_k w_k e_ik)^2 / W] - 0.5 log W - 0.5 sum_k log sigma2_k,
  //   w = 1 / sigma2, W = sum_k w_k.
  real normal_rows_level_free_lpdf(matrix resid, vector sigma2) {
    vector[rows(sigma2)] w = inv(sigma2);
    real W = sum(w);
    return -0.5 * (columns_dot_self(resid) * w) + 0.5 * dot_self(resid * w) / W
           - 0.5 * rows(resid) * (sum(log(sigma2)) + log(W));
  }

  // sum_i log Multinomial(Y[i] | softmax(theta[i]')) up to the multinomial coefficients:
  //   sum_i [y_i' theta_i - m_i log sum_k exp(theta_ik)],  m_i = sum_k y_ik,
  // with y' theta over the nonzero counts only (y_nz at column-major positions nz_idx of theta;
  // most cells of microbiome counts are zero) and one log_sum_exp per sample.
  real multinomial_logit_rows(matrix theta, vector y_nz, array[] int nz_idx, vector depth) {
    int N = rows(theta);
    vector[N] lse;
    for (i in 1:N) {
      lse[i] = log_sum_exp(theta[i]);
    }
    return dot_product(y_nz, to_vector(theta)[nz_idx]) - dot_product(depth, lse);
  }

  // 2^P x P matrix of 0/1 inclusion patterns; row s is the binary expansion of s - 1.
  matrix inclusion_patterns(int P, int S) {
    matrix[S, P] pat;
    for (s in 1:S) {
      int rest = s - 1;
      for (j in 1:P) {
        pat[s, j] = rest % 2;
        rest = rest %/% 2;
      }
    }
    return pat;
  }

  // Log weight, up to a constant shared by all patterns, of each inclusion pattern s (rows) for C
  // Gaussian regressions (columns) r_c = X_s b_s + e_c, e_c ~ N(0, v_c I), b_s ~ N(0, diag(sd_b[s])^2),
  // with b_s integrated out:
  //   w[s, c] = log p(s | pi) + 0.5 u' B^{-1} u - 0.5 log det B,
  //   B = I + M_s / v_c,  M_s = D X_s'X_s D,  u = D X_s' r_c / v_c,  D = diag(sd_b[s]).
  // One eigendecomposition M_s = V diag(lambda) V' per pattern makes each regression O(P^2).
  matrix pattern_log_weights(matrix XtX, matrix XtR, vector v, vector sd_b, matrix pat,
                             array[,] int pat_cols, array[] int pat_size, vector log_pi,
                             vector log1m_pi) {
    int S = rows(pat);
    int C = cols(XtR);
    matrix[S, C] w;
    row_vector[C] inv_v = (1 ./ v)';
    for (s in 1:S) {
      real lp_s = pat[s] * log_pi + (1 - pat[s]) * log1m_pi;
      int n = pat_size[s];
      if (n == 0) {
        w[s] = rep_row_vector(lp_s, C);
      } else {
        array[n] int idx = pat_cols[s, 1:n];
        vector[n] d = sd_b[idx];
        tuple(matrix[n, n], vector[n]) ev = eigendecompose_sym(quad_form_diag(XtX[idx, idx], d));
        matrix[n, C] z = ev.1' * diag_pre_multiply(d, XtR[idx, :]);  // V' D X_s'r_c
        matrix[n, C] g = ev.2 * inv_v;  // lambda_j / v_c
        w[s] = lp_s + 0.5 * columns_dot_product(z, z ./ (1 + g)) .* square(inv_v)
               - 0.5 * rep_row_vector(1, n) * log1p(g);
      }
    }
    return w;
  }

  // Draw b_s from its Gaussian conditional given pattern s (columns idx) for one regression:
  // e = b_s ./ d ~ N(B^{-1} u, B^{-1}) with B and u as in pattern_log_weights.
  vector slab_rng(matrix XtX, vector xtr, real v, vector sd_b, array[] int idx) {
    int n = size(idx);
    vector[n] d = sd_b[idx];
    tuple(matrix[n, n], vector[n]) ev = eigendecompose_sym(quad_form_diag(XtX[idx, idx], d));
    vector[n] prec = 1 + ev.2 / v;  // eigenvalues of B
    vector[n] proj = ev.1' * (d .* xtr[idx] / v);  // V' u
    vector[n] e = ev.1 * (proj ./ prec + to_vector(normal_rng(rep_vector(0, n), 1)) ./ sqrt(prec));
    return d .* e;
  }

  // Effects gamma (R x C) of the blocking levels from their hierarchically centred means h:
  // a nested level is centred on its parent's mean, a first-factor level on root, others on 0.
  // The map h -> gamma is unit-triangular (Jacobian 1).
  matrix level_effects(matrix h, row_vector root, array[] int level_factor,
                       array[] int level_parent) {
    matrix[rows(h), cols(h)] gamma = h;
    for (r in 1:rows(h)) {
      if (level_parent[r] > 0) {
        gamma[r] -= h[level_parent[r]];
      } else if (level_factor[r] == 1) {
        gamma[r] -= root;
      }
    }
    return gamma;
  }
}
data {
  int<lower=1> N;                         // samples
  int<lower=2> K;                         // taxa (columns of Y)
  int<lower=1> P;                         // treatment columns of X
  int<lower=1> L;                         // latent factors (declare in all three models; nofactor ignores it)
  int<lower=0> Q;                         // blocking factors
  int<lower=0> R;                         // blocking levels, counted across all factors
  array[N, K] int<lower=0> Y;             // counts
  matrix[N, P] X;                         // treatment design, no intercept
  array[N, Q] int<lower=1, upper=R> block;    // level of each blocking factor for each sample
  array[R] int<lower=1, upper=Q> level_factor; // which blocking factor each level belongs to
  array[R] int<lower=0, upper=R> level_parent; // level of the previous factor that contains this level when factors are nested, else 0
  int<lower=1> T;                         // formula terms (a term may span several columns)
  array[T, P] int<lower=0, upper=1> term_cols; // 1 when column j belongs to term t
  int<lower=1> A;                         // size of the grid for a_l (mimix only; declare in all)
  vector<lower=0>[A] a_grid;              // 0.01, 0.02, ..., 0.50
}
transformed data {
  int P_MAX = 6;  // 2^P inclusion patterns are enumerated per factor row
  if (P > P_MAX) {
    reject("mimix: the treatment design has P = ", P, " columns; at most P_MAX = ", P_MAX,
           " are supported (2^P inclusion patterns are enumerated). Drop or merge columns.");
  }
  int S = 1;  // number of inclusion patterns, 2^P
  for (j in 1:P) {
    S *= 2;
  }
  matrix[S, P] pat = inclusion_patterns(P, S);  // pattern s: pat[s, j] = 1 when column j is in
  array[S, P] int pat_int;  // the same as integers, for omega
  array[S, P] int pat_cols = rep_array(0, S, P);  // included columns, left-aligned
  array[S] int pat_size = rep_array(0, S);  // number of included columns
  matrix[T, S] term_off;  // 1 when pattern s includes no column of term t
  for (s in 1:S) {
    for (j in 1:P) {
      pat_int[s, j] = pat[s, j] > 0.5;
      if (pat_int[s, j]) {
        pat_size[s] += 1;
        pat_cols[s, pat_size[s]] = j;
      }
    }
    for (t in 1:T) {
      term_off[t, s] = dot_product(to_vector(term_cols[t]), pat[s]') == 0;
    }
  }
  matrix[P, S] pat_off = (1 - pat)';  // 1 when pattern s excludes column j
  matrix[P, P] XtX = crossprod(X);  // sufficient statistic of the slab regressions
  // Sparse form of Y for the likelihood: nonzero counts and their column-major positions in an
  // N x K matrix, and each sample's depth m_i.
  int n_nonzero = 0;
  for (k in 1:K) {
    for (i in 1:N) {
      n_nonzero += Y[i, k] > 0;
    }
  }
  array[n_nonzero] int nz_idx;
  vector[n_nonzero] y_nz;
  vector[N] depth;
  {
    int c = 0;
    for (k in 1:K) {
      for (i in 1:N) {
        if (Y[i, k] > 0) {
          c += 1;
          nz_idx[c] = (k - 1) * N + i;
          y_nz[c] = Y[i, k];
        }
      }
    }
    for (i in 1:N) {
      depth[i] = sum(Y[i]);
    }
  }
  // Each sample's reference taxon (its most abundant; the first one on ties) and the other taxa
  array[N] int ref;
  array[N, K - 1] int others;
  for (i in 1:N) {
    ref[i] = 1;
    for (k in 2:K) {
      if (Y[i, k] > Y[i, ref[i]]) {
        ref[i] = k;
      }
    }
    int c = 0;
    for (k in 1:K) {
      if (k != ref[i]) {
        c += 1;
        others[i, c] = k;
      }
    }
  }
  // Scale c of the loadings' adaptive centring (see header): about the precision with which the data
  // resolve a loading, sqrt(sigma2_k / sum_i f_il^2) ~ sqrt(sigma2_k / N), for sigma2_k ~ 1/16.
  real c_Lambda = 0.25 / sqrt(N);
  matrix[N, R] Z = rep_matrix(0, N, R);  // Z[i, r] = 1 when sample i is in level r
  for (i in 1:N) {
    for (q in 1:Q) {
      Z[i, block[i, q]] = 1;
    }
  }
}
parameters {
  matrix[N, K - 1] theta_free;  // theta_ik - theta_i,ref[i], k != ref[i]: log-ratios to the reference taxon
  vector[K] mu;  // taxon means
  real<lower=0> sigma2_mu;  // variance of mu
  vector<lower=0>[K] sigma2;  // taxon-specific error variance
  matrix[N, L] F;  // factor scores f_i (rows), centred
  matrix[R, L] h;  // hierarchically centred level means in the factor layer (see header)
  vector<lower=0>[Q] sigma2_g;  // variance of the level effects g, per blocking factor
  vector<lower=0>[P] sigma2_b;  // slab variance, per treatment column
  vector<lower=0, upper=1>[P] pi;  // prior inclusion probability, per treatment column
  matrix[L, K] z_Lambda;  // adaptively centred loadings: Lambda = z_Lambda .* g(sd_Lambda) (see header)
  matrix<lower=0>[L, K] psi;  // local Laplace mixing variances
  matrix<lower=0>[L, K] phi;  // xi_lk * tau_l
  real<lower=0> nu;  // rate of the Dirichlet-Laplace scales
}
transformed parameters {
  matrix[L, K] Lambda;  // factor loadings (L x K)
  {
    matrix[L, K] sd_Lambda = sqrt(psi) .* phi;  // prior sd of each loading, s = sqrt(psi) xi tau
    Lambda = z_Lambda .* sd_Lambda ./ sqrt(1 + square(sd_Lambda / c_Lambda));  // z g(s)
  }
}
model {
  // theta_i up to its level: 0 at the sample's reference taxon, theta_free elsewhere
  matrix[N, K] theta;
  for (i in 1:N) {
    theta[i, ref[i]] = 0;
    theta[i, others[i]] = theta_free[i];
  }
  matrix[R, L] g = level_effects(h, rep_row_vector(0, L), level_factor, level_parent);  // paper's g'
  vector[R] sd_level = sqrt(sigma2_g[level_factor]);
  matrix[N, L] F_resid = F - Z * g;  // F minus its blocking part

  sigma2_mu ~ inv_gamma(1, 1);
  mu ~ normal(0, sqrt(sigma2_mu));
  sigma2 ~ inv_gamma(1, 1);
  sigma2_g ~ inv_gamma(1, 1);
  to_vector(g) ~ normal(0, to_vector(rep_matrix(sd_level, L)));
  sigma2_b ~ inv_gamma(1, 1);
  pi ~ beta(1, L);
  nu ~ gamma(1, 1);
  {
    // phi_lk ~ Gamma(a_l, nu) with a_l summed over the grid
    vector[L] sum_log_phi = log(phi) * rep_vector(1, K);
    vector[L] sum_phi = phi * rep_vector(1, K);
    vector[A] lp_a0 = K * (a_grid * log(nu) - lgamma(a_grid)) - log(A);
    for (l in 1:L) {
      target += log_sum_exp(lp_a0 + (a_grid - 1) * sum_log_phi[l] - nu * sum_phi[l]);
    }
  }
  to_vector(psi) ~ exponential(0.5);
  // Lambda_lk ~ N(0, s_lk^2) with Lambda = z g(s): z ~ N(0, (s / g(s))^2) (the Jacobian g(s) included)
  to_vector(z_Lambda) ~ normal(0, sqrt(1 + square(to_vector(sqrt(psi) .* phi) / c_Lambda)));
  // F given everything but b: N(block effects, I), times the pattern mixture of the collapsed
  // spike-and-slab (b_tilde and omega integrated out per factor row)
  to_vector(F_resid) ~ std_normal();
  {
    matrix[S, L] w = pattern_log_weights(XtX, X' * F_resid, rep_vector(1, L), sqrt(sigma2_b), pat,
                                         pat_cols, pat_size, log(pi), log1m(pi));
    for (l in 1:L) {
      target += log_sum_exp(w[:, l]);
    }
  }
  // theta_ik ~ N(mu_k + (Lambda' f_i)_k, sigma2_k), each sample's level integrated out
  target += normal_rows_level_free_lupdf(theta - rep_matrix(mu', N) - F * Lambda | sigma2);
  // Y_i ~ Multinomial(m_i, softmax(theta_i)), all samples in one call
  target += multinomial_logit_rows(theta, y_nz, nz_idx, depth);
}
generated quantities {
  matrix[K, P] beta;  // treatment effects on taxa, Lambda' b
  matrix[L, P] incl_prob;  // P(omega_lj = 1 | F, g, sigma2_b, pi), b_tilde integrated out
  array[L, P] int omega;  // inclusion indicators, drawn from their exact conditional
  vector[P] global_prob;  // P(any factor row includes column j | rest)
  vector[T] term_prob;  // P(any factor row includes any column of term t | rest)
  vector[K] lambda_diag = columns_dot_self(Lambda)';  // diag(Lambda' Lambda)
  vector[K] eta = lambda_diag ./ (lambda_diag + sigma2);  // share of variance through the factors
  {
    matrix[L, P] b = rep_matrix(0, L, P);  // omega .* b_tilde
    matrix[P, L] XtF = X' * (F - Z * level_effects(h, rep_row_vector(0, L), level_factor,
                                                  level_parent));
    matrix[S, L] w = pattern_log_weights(XtX, XtF, rep_vector(1, L), sqrt(sigma2_b), pat,
                                         pat_cols, pat_size, log(pi), log1m(pi));
    vector[P] none_col = rep_vector(1, P);  // prod_l P(omega_lj = 0 | rest)
    vector[T] none_term = rep_vector(1, T);  // prod_l P(omega_lj = 0 for all j in t | rest)
    for (l in 1:L) {
      vector[S] p = softmax(w[:, l]);  // pattern probabilities of factor row l
      int s = categorical_rng(p);
      incl_prob[l] = (pat' * p)';
      none_col .*= pat_off * p;
      none_term .*= term_off * p;
      omega[l] = pat_int[s];
      if (pat_size[s] > 0) {
        array[pat_size[s]] int idx = pat_cols[s, 1:pat_size[s]];
        b[l, idx] = slab_rng(XtX, XtF[:, l], 1, sqrt(sigma2_b), idx)';
      }
    }
    global_prob = 1 - none_col;
    term_prob = 1 - none_term;
    beta = Lambda' * b;
  }
}
