"""The study's analysis: tables 3-5 of Yoshihashi et al. 2022 and repeated-measures statistics."""
