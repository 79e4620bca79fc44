//! A submission's file, turned into images a vision model can read: fetched from local storage
//! or Supabase Storage (size- and hash-checked, keys confined to their bucket), photos made
//! upright and scaled, PDFs rendered page by page onto sheets, and GUSTAV's derived folder
//! (page images and cached sheets) used the way the web app lays it out.

pub mod derived;
pub mod pages;
pub mod pdf;
pub mod photo;
pub mod storage;
pub mod vision_input;
