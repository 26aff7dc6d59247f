// The claim page's AudioWorklet: feeds the microphone's samples to the cue
// detector (cuedetect.js, loaded into the same worklet scope first) and
// posts only what it heard, a 32-bit code, to the page. The audio stays here.
/* global MicrodropCueDetector, sampleRate, registerProcessor, AudioWorkletProcessor */
class MicrodropListener extends AudioWorkletProcessor {
  constructor() {
    super();
    this.det = new MicrodropCueDetector.Detector(sampleRate);
    this.port.postMessage({ ready: true, rate: sampleRate, profiles: this.det.profiles() });
  }
  process(inputs) {
    const ch = inputs[0] && inputs[0][0];
    if (ch) {
      for (const h of this.det.write(ch)) this.port.postMessage({ code: h.code, profile: h.profile, snrDB: h.snrDB });
    }
    return true;
  }
}
registerProcessor("microdrop-listener", MicrodropListener);
