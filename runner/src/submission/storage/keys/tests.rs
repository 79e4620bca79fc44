//! The key checks as tables: GUSTAV-shaped keys of the submission's owner accepted, every
//! other key refused with its reason, errors that never name the key.

use super::*;

const COURSE: &str = "6f1c2b3a-8d4e-4f5a-9b6c-7d8e9f0a1b2c";
const TASK: &str = "0a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d";
const SUB: &str = "5b7e9c1d-2f3a-4b5c-8d6e-7f8a9b0c1d2e";
const FILE: &str = "1764922870123-bd154643c9074c7d828e51cc01231baa.jpg";

fn owner(sub: &str) -> SubmissionOwner {
    SubmissionOwner {
        course_id: COURSE.into(),
        task_id: TASK.into(),
        student_sub: sub.into(),
    }
}

fn upload_key(student: &str, file: &str) -> String {
    format!("submissions/{COURSE}/{TASK}/{student}/{file}")
}

#[test]
fn upload_keys_of_gustavs_shape_and_the_submissions_owner_are_accepted() {
    for (sub, student, file) in [
        (SUB, SUB, FILE),
        (
            SUB,
            SUB,
            "1764922870123-00000000000000000000000000000000.png",
        ),
        (
            SUB,
            SUB,
            "0000000000001-bd154643c9074c7d828e51cc01231baa.pdf",
        ),
        ("Max.Muster@Schule", "max.muster-schule", FILE),
        ("-_Ab  C_-", "ab-c", FILE),
        ("a- b", "a--b", FILE),
        ("", "student", FILE),
        ("@@@", "student", FILE),
    ] {
        let key = upload_key(student, file);
        let checked = SubmissionKey::upload(&key, &owner(sub));
        assert_eq!(checked.map(|k| k.as_str().to_owned()), Ok(key), "{sub:?}");
    }
}

#[test]
fn upload_keys_are_refused_with_their_reason() {
    use KeyError::{Foreign, Shape, Unsafe};
    let other = "11111111-2222-4333-8444-555555555555";
    let long_student = "s".repeat(MAX_UPLOAD_KEY_BYTES);
    let cases: Vec<(String, KeyError)> = vec![
        (String::new(), Unsafe),
        (format!("/{}", upload_key(SUB, FILE)), Unsafe),
        (upload_key(SUB, &format!("../{FILE}")), Unsafe),
        (
            format!("submissions/{COURSE}/{TASK}/{SUB}/./{FILE}"),
            Unsafe,
        ),
        (format!("submissions/{COURSE}/{TASK}//{FILE}"), Unsafe),
        (
            upload_key(SUB, "1764922870123-bd154643c9074c7d828e51cc0123..aa.jpg"),
            Unsafe,
        ),
        (upload_key("%2e%2e", FILE), Unsafe),
        (
            format!("submissions/{COURSE}/{TASK}/{SUB}%2f..%2f{FILE}"),
            Unsafe,
        ),
        (upload_key(SUB, &format!("x\\..\\{FILE}")), Unsafe),
        (format!("{}\0", upload_key(SUB, FILE)), Unsafe),
        (upload_key(SUB, &format!("{FILE}\n")), Unsafe),
        (upload_key("stu dent", FILE), Unsafe),
        (upload_key("schüler", FILE), Unsafe),
        (upload_key(&long_student, FILE), Unsafe),
        (format!("{}/", upload_key(SUB, FILE)), Unsafe),
        (format!("learning/{COURSE}/{TASK}/{SUB}/{FILE}"), Shape),
        (format!("{COURSE}/{TASK}/{SUB}/{FILE}"), Shape),
        (
            format!("submissions/submissions/{COURSE}/{TASK}/{SUB}/{FILE}"),
            Shape,
        ),
        (upload_key(SUB, &format!("orig/{FILE}")), Shape),
        (upload_key(&SUB.to_uppercase(), FILE), Shape),
        (
            upload_key(SUB, "1764922870123-BD154643C9074C7D828E51CC01231BAA.jpg"),
            Shape,
        ),
        (
            upload_key(SUB, "176492287012-bd154643c9074c7d828e51cc01231baa.jpg"),
            Shape,
        ),
        (
            upload_key(SUB, "1764922870123-bd154643c9074c7d828e51cc01231ba.jpg"),
            Shape,
        ),
        (
            upload_key(SUB, "1764922870123-bd154643c9074c7d828e51cc01231baa.gif"),
            Shape,
        ),
        (
            upload_key(
                SUB,
                "1764922870123-bd154643c9074c7d828e51cc01231baa.jpg.png",
            ),
            Shape,
        ),
        (upload_key(SUB, "image.png"), Shape),
        (upload_key("-x", FILE), Shape),
        (
            format!(
                "submissions/{}/{TASK}/{SUB}/{FILE}",
                COURSE.replace('-', "")
            ),
            Shape,
        ),
        (format!("submissions/{other}/{TASK}/{SUB}/{FILE}"), Foreign),
        (
            format!("submissions/{COURSE}/{other}/{SUB}/{FILE}"),
            Foreign,
        ),
        (format!("submissions/{TASK}/{COURSE}/{SUB}/{FILE}"), Foreign),
        (upload_key("another-student", FILE), Foreign),
    ];
    for (key, expected) in cases {
        assert_eq!(
            SubmissionKey::upload(&key, &owner(SUB)),
            Err(expected),
            "{key:?}"
        );
    }
}

#[test]
fn a_student_with_characters_gustav_folds_by_nfkd_is_refused_not_guessed() {
    assert_eq!(student_segment("Jörg"), None);
    assert_eq!(
        SubmissionKey::upload(&upload_key("jorg", FILE), &owner("Jörg")),
        Err(KeyError::Foreign)
    );
}

#[test]
fn the_student_segment_is_built_as_gustav_builds_it() {
    for (sub, segment) in [
        (SUB, SUB),
        ("Ab C", "ab-c"),
        ("a..b", "a..b"),
        ("..a..", "a"),
        ("x\ty\u{7f}z", "x-y-z"),
        ("___", "student"),
    ] {
        assert_eq!(student_segment(sub).as_deref(), Some(segment), "{sub:?}");
    }
}

fn page_key(student: &str, id: Uuid, name: &str) -> String {
    format!("submissions/{COURSE}/{TASK}/{student}/derived/{id}/{name}")
}

#[test]
fn page_keys_must_lie_in_the_submissions_own_derived_folder() {
    use KeyError::{Foreign, Shape, Unsafe};
    let id = Uuid::new_v4();
    let raw_sub = "Student_42";
    let upload = SubmissionKey::upload(&upload_key("student_42", FILE), &owner(raw_sub)).unwrap();
    for ok in [
        page_key("student_42", id, "page_0001.png"),
        page_key(raw_sub, id, "page_0002.png"),
        page_key(raw_sub, id, "page_123456.png"),
    ] {
        assert!(
            SubmissionKey::page(&ok, &upload, &owner(raw_sub), id).is_ok(),
            "{ok}"
        );
    }
    let other = Uuid::new_v4();
    for (bad, expected) in [
        (page_key("another-student", id, "page_0001.png"), Foreign),
        (page_key(raw_sub, other, "page_0001.png"), Foreign),
        (
            format!("submissions/{TASK}/{COURSE}/{raw_sub}/derived/{id}/page_0001.png"),
            Foreign,
        ),
        (page_key(raw_sub, id, "../../x.png"), Unsafe),
        (page_key(raw_sub, id, "page_0001.png/"), Unsafe),
        (page_key(raw_sub, id, "a/page_0001.png"), Shape),
        (page_key(raw_sub, id, "stitched.png"), Shape),
        (page_key(raw_sub, id, "page_1.png"), Shape),
        (page_key(raw_sub, id, "page_0001.PNG"), Shape),
        (page_key(raw_sub, id, "page_0001.jpg"), Shape),
        (
            format!("{COURSE}/{TASK}/{raw_sub}/derived/{id}/page_0001.png"),
            Shape,
        ),
        (
            format!("submissions/{COURSE}/{TASK}/{raw_sub}/pages/{id}/page_0001.png"),
            Shape,
        ),
        (
            format!("/{}", page_key(raw_sub, id, "page_0001.png")),
            Unsafe,
        ),
        (page_key(raw_sub, id, "page_%30001.png"), Unsafe),
    ] {
        assert_eq!(
            SubmissionKey::page(&bad, &upload, &owner(raw_sub), id),
            Err(expected),
            "{bad}"
        );
    }
    let huge = page_key(&"s".repeat(MAX_KEY_BYTES), id, "page_0001.png");
    assert_eq!(
        SubmissionKey::page(&huge, &upload, &owner(raw_sub), id),
        Err(Unsafe)
    );
}

#[test]
fn errors_are_input_corrupt_and_never_name_the_key() {
    for e in [KeyError::Unsafe, KeyError::Shape, KeyError::Foreign] {
        for error in [e.for_upload(), e.for_page()] {
            let AdapterError::Permanent { code, message, .. } = error else {
                panic!("permanent expected");
            };
            assert_eq!(code, Some(ErrorCode::InputCorrupt));
            assert!(!message.contains("submissions/") && !message.contains(SUB));
        }
    }
    let key = SubmissionKey::upload(&upload_key(SUB, FILE), &owner(SUB)).unwrap();
    assert_eq!(format!("{key:?}"), "SubmissionKey(..)");
}
