// EXPERIMENT (bench/geometry-log.md, sessions 8-11): mimix_gaussian with the zero-count cells of rare
// taxa (prevalence < nc_prevalence, data) partially non-centred (Papaspiliopoulos, Roberts & Skold 2007):
// there theta_ik - theta_i,ref = (M_ik - M_i,ref) + sigma_k^a u_ik, M = 1 mu' + F Lambda, a = nc_power (data;
// a = 1 is session 9's full non-centring, S9-1, a = 0.5 the no-factor model's form). Affine given the other
// parameters: log Jacobian sum over those cells of a log sigma_k. Every other cell as in mimix_gaussian.stan
// (theta_free, level integrated out). nc_factor_mean (data, 0 or 1): 1 centres those cells on M as above
// (session 9, S11-1); 0 on 1 mu' alone, so that the factors F Lambda reach the multinomial only through theta's
// Gaussian prior, as in the centred form (S11-2).
functions {
#include functions.stan
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
  real<lower=0, upper=1> nc_prevalence;   // EXPERIMENT: zero cells of taxa below this prevalence are non-centred
  real<lower=0, upper=1> nc_power;        // EXPERIMENT: power a of sigma_k in the non-centred map
  int<lower=0, upper=1> nc_factor_mean;   // EXPERIMENT: 1 centres the non-centred cells on mu + F Lambda, 0 on mu
}
transformed data {
#include transformed_data.stan
  matrix[N, K] nc = rare_zero_cells(Y, nc_prevalence);  // 1 for a non-centred cell
  vector[K] n_nc = (rep_row_vector(1, N) * nc)';
  print("non-centred cells: ", sum(n_nc));
}
parameters {
  // theta_ik - theta_i,ref[i]: log-ratios to each sample's reference taxon; the reference cells
  // (i, ref[i]) are unused auxiliaries ~ N(0, 1) (a fixed-shape matrix keeps theta one autodiff node)
  matrix[N, K] theta_free;
  vector[K] mu;  // taxon means
  real<lower=0> sigma2_mu;  // variance of mu
  vector<lower=0>[K] sigma2;  // taxon-specific error variance
  matrix[N, L] F_scaled;  // factor scores times the loading sd: F diag(sd_lambda) (see header)
  matrix[R, L] h_scaled;  // hierarchically centred level means times the loading sd
  vector<lower=0>[Q] sigma2_g;  // variance of the level effects g, per blocking factor
  vector<lower=0>[P] sigma2_b;  // slab variance, per treatment column
  vector<lower=0, upper=1>[P] pi;  // prior inclusion probability, per treatment column
  matrix[L, K] z_Lambda;  // non-centred loadings
  vector<lower=0>[L] sigma2_lambda;  // loading variance, per factor
}
transformed parameters {
  matrix[L, K] Lambda = diag_pre_multiply(sqrt(sigma2_lambda), z_Lambda);  // factor loadings
  matrix[N, L] F = diag_post_multiply(F_scaled, inv_sqrt(sigma2_lambda));  // factor scores f_i (rows)
  matrix[R, L] h = diag_post_multiply(h_scaled, inv_sqrt(sigma2_lambda));  // level means (factor layer)
}
model {
  // theta_i up to its level: 0 at the sample's reference taxon, theta_free elsewhere
  matrix[N, K] F_Lambda = F_scaled * z_Lambda;  // F Lambda = F_scaled z_Lambda
  matrix[N, K] M = rep_vector(1, N) * mu' + nc_factor_mean * F_Lambda;
  // reference cells: theta_free .* not_ref is 0 there, and nc is 0 there (they have counts)
  matrix[N, K] theta = theta_from_raw(theta_free .* not_ref, nc, M - to_vector(M)[ref_pos] * rep_row_vector(1, K),
                                      pow(sigma2, 0.5 * nc_power));
  target += 0.5 * nc_power * dot_product(n_nc, log(sigma2));  // log Jacobian of the non-centred cells
  matrix[R, L] g = level_effects(h, rep_row_vector(0, L), parent_of, first_level);  // paper's g'
  vector[R] sd_level = sqrt(sigma2_g[level_factor]);
  matrix[N, L] F_resid = F - Z * g;  // F minus its blocking part

  target += std_normal_lupdf(to_vector(theta_free)[ref_pos]);  // the unused reference cells
  sigma2_mu ~ inv_gamma(1, 1);
  mu ~ normal(0, sqrt(sigma2_mu));
  sigma2 ~ inv_gamma(1, 1);
  sigma2_g ~ inv_gamma(1, 1);
  to_vector(g) ~ normal(0, to_vector(rep_matrix(sd_level, L)));
  sigma2_b ~ inv_gamma(1, 1);
  pi ~ beta(1, L);
  sigma2_lambda ~ inv_gamma(1, 1);
  // log |d(F, h) / d(F_scaled, h_scaled)|: each of the N + R entries of column l is divided by sd_lambda_l
  target += -0.5 * (N + R) * sum(log(sigma2_lambda));
  to_vector(z_Lambda) ~ std_normal();
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
  target += normal_rows_level_free_lupdf(theta - F_Lambda | mu, sigma2);
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
    matrix[P, L] XtF = X' * (F - Z * level_effects(h, rep_row_vector(0, L), parent_of, first_level));
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
