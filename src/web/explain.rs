//! "What am I looking at?" panels.

use leptos::prelude::*;

#[component]
pub fn PhaseExplain() -> impl IntoView {
    view! {
        <details class="explain chrome">
            <summary>"What am I looking at?"</summary>
            <p>
                "LoRA-One's claim: one full gradient step already points at the right subspace, so
                starting LoRA from the SVD of that gradient skips the slow alignment stage that vanilla
                LoRA must go through, provably and at almost no cost. This picture shows the smallest
                case: a rank-one target Δ = δ·u vᵀ and rank-one adapters A = a·u, B = b·vᵀ."
            </p>
            <ul>
                <li>"Shading: log₁₀ of the loss L(a, b) = ½(ab − δ)² (light = low); thin lines are its contours."</li>
                <li>"Arrows: the negative gradient −∇L, where gradient descent pushes."</li>
                <li>"Thick curve: the minimisers ab = δ. Ring at the origin: the saddle, where gradients vanish."</li>
                <li>"Lines: gradient-descent trajectories of the full 2×2 problem projected on the plane
                    (the readout's off-plane column is ‖A⊥‖ + ‖B⊥‖). Square = start, dot = current step."</li>
            </ul>
            <p>"The three initialisations, with G = −∇W L(W0) = U S Vᵀ:"</p>
            <ul>
                <li><b>"Vanilla LoRA"</b>": A₀ ~ N(0, α²), B₀ = 0 — starts next to the saddle and must escape it first."</li>
                <li><b>"LoRA-GA"</b>": A₀ = c·(−U)[:, 1:r], B₀ = c·V[:, r+1:2r]ᵀ, c = k^¼/√γ_GA, with the offset W0 − A₀B₀ frozen — its B₀ lies off this plane."</li>
                <li><b>"LoRA-One"</b>": A₀ = √γ·U[:, 1:r]·S^½, B₀ = √γ·S^½·V[:, 1:r]ᵀ, so A₀B₀ = γ·P_r(G) — it starts on or next to the hyperbola."</li>
            </ul>
            <p>"This 2×2 slice is computed on the CPU reference (f64); the dynamics lab runs on the GPU."</p>
            <p>"Keys: space play/pause, . one step, r reset, 1 2 3 4 show or hide a method. Click or drag on the plot to start your own trajectory."</p>
        </details>
    }
}

#[component]
pub fn LabExplain() -> impl IntoView {
    view! {
        <details class="explain chrome">
            <summary>"What am I looking at?"</summary>
            <p>
                "The paper's experiment in full: a d×k linear (or ReLU) model with a rank-r* target Δ,
                trained with rank-r LoRA from three initialisations. LoRA-One's spectral init starts
                aligned with the target subspace, so its risk falls at once, while vanilla LoRA first
                spends about ln d steps aligning (sin θ falls from ≈1), and LoRA-GA's off-subspace B₀
                and frozen offset make it plateau when r exceeds r*."
            </p>
            <ul>
                <li>"Risk: ½‖A_tB_t − Δ‖²_F (log₁₀, solid); loss L(A_t, B_t) (log₁₀, dashed)."</li>
                <li>"Alignment: sin θ_A (solid) between A_t's and G's top-r* left singular subspaces; sin θ_B (dashed) for the right ones. 0 = aligned."</li>
                <li>"Spectra: singular values of G (black diamonds) and of the final A_tB_t for each run."</li>
                <li>"Cost: time to form G and its truncated SVD (the init's own cost) against training time."</li>
            </ul>
            <p>
                "Inits: vanilla A₀ ~ N(0, α²), B₀ = 0; LoRA-GA A₀ = c·(−U)[:, 1:r], B₀ = c·V[:, r+1:2r]ᵀ,
                c = k^¼/√γ_GA, frozen weight W0 − A₀B₀; LoRA-One A₀ = √γ·U_r S_r^½, B₀ = √γ·S_r^½ V_rᵀ."
            </p>
        </details>
    }
}
